"""QR input: what a scanned text identifies (signed token, legacy id), and its encodings."""
