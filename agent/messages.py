"""Attendant-facing wording, Bahasa Indonesia first, English available."""

from __future__ import annotations

from agent.domain import PRODUCT_LABELS, format_litres, format_rupiah

_TEXT: dict[str, dict[str, str]] = {
    "id": {
        "ok": "BOLEH ISI  pompa {pump}  {plate}  {product}  sisa kuota {remaining} L, preset {preset} L",
        "ok_capped": "BOLEH ISI  pompa {pump}  {plate}  {product}  DIBATASI KUOTA: maks {preset} L",
        "ok_offline": "BOLEH ISI  pompa {pump}  {plate}  {product}  MODE OFFLINE: maks {preset} L",
        "done": "SELESAI    pompa {pump}  {plate}  {product}  {litres} L  {amount}",
        "unknown_qr": "DITOLAK    pompa {pump}  QR tidak dikenal",
        "pump_closed": "DITOLAK    pompa {pump}  pompa ditutup oleh pengelola",
        "estop": "DARURAT    pompa {pump}  tombol henti darurat ditekan, pengisian dihentikan",
        "pump_locked": "DITOLAK    pompa {pump}  pompa dikunci lewat perintah jarak jauh",
        "clock_untrusted": "PERINGATAN jam sistem tidak dapat dipercaya; kuota memakai hari {day}",
        "not_registered": "DITOLAK    pompa {pump}  kendaraan tidak terdaftar",
        "suspended": "DITOLAK    pompa {pump}  {plate}  kendaraan diblokir",
        "wrong_product": "DITOLAK    pompa {pump}  {plate}  tidak berhak membeli {product}",
        "quota_exhausted": "DITOLAK    pompa {pump}  {plate}  kuota harian {product} habis "
        "(terpakai {used} dari {limit} L), kembali pukul 00.00 {zone}",
        "no_list": "DITOLAK    pompa {pump}  daftar kendaraan belum diterima",
        "list_expired": "DITOLAK    pompa {pump}  daftar kendaraan kedaluwarsa",
        "pump_busy": "DITOLAK    pompa {pump}  pompa sedang dipakai",
        "vehicle_busy": "DITOLAK    pompa {pump}  {plate}  sedang mengisi di pompa lain",
        "pump_unavailable": "DITOLAK    pompa {pump}  pompa tidak tersedia",
        "internal_error": "DITOLAK    pompa {pump}  gangguan sistem, silakan pindai ulang",
        "token_forged": "DITOLAK    pompa {pump}  QR PALSU: tanda tangan tidak sah. Jangan isi; minta QR asli "
        "dari aplikasi",
        "token_plate_altered": "DITOLAK    pompa {pump}  QR DIUBAH: nomor polisi {plate} bukan yang diterbitkan. "
        "Jangan isi; cocokkan dengan kendaraan",
        "token_unknown_key": "DITOLAK    pompa {pump}  QR dari penerbit yang belum dikenal stasiun ini. Minta QR "
        "terbaru atau hubungi pengelola",
        "duplicate": "",
        "scanner_camera_lost": "PERINGATAN pompa {pump}  kamera QR terputus; pakai pemindai tangan",
        "scanner_too_dark": "PERINGATAN pompa {pump}  kamera QR terlalu gelap; periksa lampu dan lensa",
        "scanner_ok": "INFO       pompa {pump}  kamera QR normal kembali",
        "paying": "BAYAR      pompa {pump}  masukkan kartu/QRIS di EDC: {amount} untuk {preset} L",
        "payment_approved": "DISETUJUI  pompa {pump}  {amount}  kode persetujuan {detail}",
        "payment_declined": "DITOLAK    pompa {pump}  kartu ditolak ({detail}), silakan bayar tunai",
        "payment_cash": "TUNAI      pompa {pump}  kartu tidak terbayar ({detail}), tagih {amount} tunai",
        "payment_checking": "MENUNGGU   pompa {pump}  EDC tidak menjawab, menanyakan transaksi terakhir",
        "edc_unavailable": "DITOLAK    pompa {pump}  EDC tidak tersedia, silakan bayar tunai",
        "amount_too_small": "DITOLAK    pompa {pump}  jumlah prabayar terlalu kecil",
        "legacy_disabled": "DITOLAK    pompa {pump}  QR lama tidak berlaku lagi; minta QR baru dari aplikasi",
        "token_expired": "DITOLAK    pompa {pump}  {plate}  QR kedaluwarsa; minta QR terbaru dari aplikasi",
        "token_revoked": "DITOLAK    pompa {pump}  {plate}  QR sudah diganti yang baru; minta QR terbaru dari "
        "aplikasi",
        "lift_nozzle": "ANGKAT     pompa {pump}  {plate}  angkat nozel {product}",
        "wrong_grade": "DITOLAK    pompa {pump}  {plate}  tidak berhak {product}: gantung nozel ini, "
        "angkat nozel {detail}",
        "pump_out_of_service": "DITOLAK    pompa {pump}  pompa tidak menjawab (rusak/kabel putus), pakai pompa lain",
        "disk_full": "DITOLAK    pompa {pump}  penyimpanan penuh, penjualan tidak dapat dicatat; hubungi teknisi",
        "journal_unwritable": "DITOLAK    pompa {pump}  jurnal tidak dapat ditulis; hubungi teknisi",
        "disk_read_only": "DITOLAK    pompa {pump}  penyimpanan hanya-baca, penjualan tidak dapat dicatat; "
        "hubungi teknisi",
        "disk_low_alarm": "PERINGATAN ruang penyimpanan hampir habis ({detail}); hubungi teknisi",
        "disk_full_alarm": "PERINGATAN penyimpanan penuh ({detail}): penjualan baru ditolak; hubungi teknisi",
        "disk_read_only_alarm": "PERINGATAN penyimpanan hanya-baca: penjualan baru ditolak; hubungi teknisi",
        "disk_ok_alarm": "INFO       ruang penyimpanan normal kembali ({detail})",
        "close_pending": "PERINGATAN pompa {pump}  pengisian selesai tetapi belum tercatat (penyimpanan penuh); "
        "hubungi teknisi",
        "ok_elsewhere": "BOLEH ISI  pompa {pump}  {plate}  {product}  sudah {elsewhere} L hari ini di SPBU lain; "
        "sisa kuota {remaining} L, preset {preset} L",
        "ok_offline_share": "BOLEH ISI  pompa {pump}  {plate}  {product}  DATA KUOTA NASIONAL TERTUNDA: "
        "maks {preset} L di SPBU ini hari ini",
        "quota_used_elsewhere": "DITOLAK    pompa {pump}  {plate}  kuota harian {product} habis: sudah {elsewhere} L "
        "hari ini di SPBU lain (batas {limit} L), kembali pukul 00.00 {zone}",
        "offline_share_used": "DITOLAK    pompa {pump}  {plate}  DATA KUOTA NASIONAL TERTUNDA: batas offline {product} "
        "di SPBU ini habis (terpakai {used} L)",
        "stopped_elsewhere": "DIHENTIKAN pompa {pump}  {plate}  kuota sedang/sudah dipakai di SPBU lain "
        "({elsewhere} L); hentikan pengisian",
        "usage_stale": "PERINGATAN data kuota nasional tertunda; tiap kendaraan dibatasi bagian offline",
        "usage_fresh": "INFO       data kuota nasional kembali terkini",
    },
    "en": {
        "ok": "GO AHEAD  pump {pump}  {plate}  {product}  quota left {remaining} L, preset {preset} L",
        "ok_capped": "GO AHEAD  pump {pump}  {plate}  {product}  LIMITED BY QUOTA: max {preset} L",
        "ok_offline": "GO AHEAD  pump {pump}  {plate}  {product}  OFFLINE MODE: max {preset} L",
        "done": "DONE      pump {pump}  {plate}  {product}  {litres} L  {amount}",
        "unknown_qr": "REFUSED   pump {pump}  unknown QR code",
        "pump_closed": "REFUSED   pump {pump}  pump closed by the manager",
        "estop": "EMERGENCY pump {pump}  emergency stop pressed, fuelling stopped",
        "pump_locked": "REFUSED   pump {pump}  pump locked by remote command",
        "clock_untrusted": "WARNING   system clock not trusted; quota uses day {day}",
        "not_registered": "REFUSED   pump {pump}  vehicle not registered",
        "suspended": "REFUSED   pump {pump}  {plate}  vehicle suspended",
        "wrong_product": "REFUSED   pump {pump}  {plate}  not entitled to {product}",
        "quota_exhausted": "REFUSED   pump {pump}  {plate}  daily {product} quota used up "
        "({used} of {limit} L), resets at 00:00 {zone}",
        "no_list": "REFUSED   pump {pump}  vehicle list not received yet",
        "list_expired": "REFUSED   pump {pump}  vehicle list expired",
        "pump_busy": "REFUSED   pump {pump}  pump in use",
        "vehicle_busy": "REFUSED   pump {pump}  {plate}  already fuelling at another pump",
        "pump_unavailable": "REFUSED   pump {pump}  pump unavailable",
        "internal_error": "REFUSED   pump {pump}  system fault, please scan again",
        "token_forged": "REFUSED   pump {pump}  FAKE QR: the signature is not valid. Do not fuel; ask for the "
        "QR from the app",
        "token_plate_altered": "REFUSED   pump {pump}  ALTERED QR: plate {plate} is not the one issued. Do not "
        "fuel; check the vehicle",
        "token_unknown_key": "REFUSED   pump {pump}  QR from an issuer this station does not know yet. Ask for "
        "a fresh QR or call the manager",
        "duplicate": "",
        "scanner_camera_lost": "WARNING   pump {pump}  QR camera disconnected; use the handheld scanner",
        "scanner_too_dark": "WARNING   pump {pump}  QR camera too dark; check the light and the lens",
        "scanner_ok": "INFO      pump {pump}  QR camera back to normal",
        "paying": "PAY       pump {pump}  card/QRIS on the EDC: {amount} for {preset} L",
        "payment_approved": "APPROVED  pump {pump}  {amount}  approval code {detail}",
        "payment_declined": "REFUSED   pump {pump}  card declined ({detail}), please pay cash",
        "payment_cash": "CASH      pump {pump}  card did not pay ({detail}), collect {amount} in cash",
        "payment_checking": "WAITING   pump {pump}  EDC not answering, asking for its last transaction",
        "edc_unavailable": "REFUSED   pump {pump}  EDC unavailable, please pay cash",
        "amount_too_small": "REFUSED   pump {pump}  prepaid amount too small",
        "legacy_disabled": "REFUSED   pump {pump}  old-style QR no longer accepted; ask for a new QR from the app",
        "token_expired": "REFUSED   pump {pump}  {plate}  QR expired; ask for the latest QR from the app",
        "token_revoked": "REFUSED   pump {pump}  {plate}  QR was replaced by a newer one; ask for the latest QR",
        "lift_nozzle": "LIFT      pump {pump}  {plate}  lift the {product} nozzle",
        "wrong_grade": "REFUSED   pump {pump}  {plate}  not entitled to {product}: hang up this nozzle, lift {detail}",
        "pump_out_of_service": "REFUSED   pump {pump}  pump not answering (fault or cable), use another pump",
        "disk_full": "REFUSED   pump {pump}  storage full, the sale cannot be recorded; call a technician",
        "journal_unwritable": "REFUSED   pump {pump}  journal cannot be written; call a technician",
        "disk_read_only": "REFUSED   pump {pump}  storage is read-only, the sale cannot be recorded; "
        "call a technician",
        "disk_low_alarm": "WARNING   storage almost full ({detail}); call a technician",
        "disk_full_alarm": "WARNING   storage full ({detail}): new sales refused; call a technician",
        "disk_read_only_alarm": "WARNING   storage is read-only: new sales refused; call a technician",
        "disk_ok_alarm": "INFO      storage back to normal ({detail})",
        "close_pending": "WARNING   pump {pump}  fill ended but not yet recorded (storage full); "
        "call a technician",
        "ok_elsewhere": "GO AHEAD  pump {pump}  {plate}  {product}  already {elsewhere} L today at other stations; "
        "quota left {remaining} L, preset {preset} L",
        "ok_offline_share": "GO AHEAD  pump {pump}  {plate}  {product}  NATIONAL USAGE DELAYED: max {preset} L at "
        "this station today",
        "quota_used_elsewhere": "REFUSED   pump {pump}  {plate}  daily {product} quota used up: already {elsewhere} L "
        "today at other stations (limit {limit} L), resets at 00:00 {zone}",
        "offline_share_used": "REFUSED   pump {pump}  {plate}  NATIONAL USAGE DELAYED: this station's offline "
        "{product} share is used ({used} L)",
        "stopped_elsewhere": "STOPPED   pump {pump}  {plate}  quota being used or used at another station "
        "({elsewhere} L); stop fuelling",
        "usage_stale": "WARNING   national usage delayed; each vehicle limited to the offline share",
        "usage_fresh": "INFO      national usage up to date again",
    },
}

LANGUAGES = tuple(_TEXT)


def attendant_line(
    lang: str,
    key: str,
    *,
    pump: int,
    plate: str = "",
    product: str = "",
    remaining_ml: int = 0,
    preset_ml: int = 0,
    used_ml: int = 0,
    limit_ml: int = 0,
    litres_ml: int = 0,
    amount_idr: int = 0,
    zone: str = "WIB",
    day: str = "",
    detail: str = "",
    elsewhere_ml: int = 0,
) -> str:
    table = _TEXT.get(lang, _TEXT["id"])
    template = table.get(key, table["unknown_qr"])
    return template.format(
        pump=pump,
        plate=plate or "-",
        product=PRODUCT_LABELS.get(product, product),
        remaining=format_litres(remaining_ml, lang),
        preset=format_litres(preset_ml, lang),
        used=format_litres(used_ml, lang),
        limit=format_litres(limit_ml, lang),
        litres=format_litres(litres_ml, lang),
        amount=format_rupiah(amount_idr, lang),
        zone=zone,
        day=day,
        detail=detail,
        elsewhere=format_litres(elsewhere_ml, lang),
    ).rstrip()
