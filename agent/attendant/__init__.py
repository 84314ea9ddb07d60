"""The pump attendant's app, station side: devices, shift sign-in, the attendant's requests
(camera scans, payment choice, stop, receipt reprint), the per-pump view the page shows and
the shift close (serah terima) report. The page itself is attendant/www."""
