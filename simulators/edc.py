"""EDC card terminal simulator: speaks the ECR protocol (hal/ecr_proto.py, the same codec
as the agent) on a pseudo-terminal or serial port.

Behaviours are scripted per request, in order (`script(...)`); unscripted requests are
approved. Its own ledger of every charge, void and refund is persisted to a JSON file,
as a real terminal keeps its batch, so a power cycle does not forget what was charged and
the last-transaction inquiry is answered from it. Tests and the demo read the ledger to
check the agent's claims against the terminal's.

Behaviours: "approve", "decline:CODE" (51 insufficient funds, 55 wrong PIN, 05 do not
honour ...), "slow:SECONDS" (PIN entry), "no_answer" (ACK, then silence), "nak:N" (NAK the
next N frames), "garble" (first copy of the answer corrupted), "power_cycle:SECONDS"
(charge, persist, die before answering, come back after SECONDS), "offline:SECONDS"
(deaf: no ACK at all).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from hal import ecr_proto as ecr
from simulators.pty_device import PtyDevice, SerialDevice, ThreadedDevice

BEHAVIOURS = ("approve", "decline", "slow", "no_answer", "nak", "garble", "power_cycle", "offline")


def _ms() -> int:
    return int(time.monotonic() * 1000)


class EdcSim(ThreadedDevice):
    def __init__(self, state_path: Path | None = None, port: str | None = None, baudrate: int = 9600,
                 tid: str = "T0001234", mid: str = "000885000123456", ack_timeout_ms: int = 2000) -> None:
        self.device: PtyDevice | SerialDevice = SerialDevice(port, baudrate) if port else PtyDevice()
        self.state_path = state_path
        self.tid = tid
        self.mid = mid
        self._ack_timeout_ms = ack_timeout_ms
        self._link = ecr.Link(ack_timeout_ms=ack_timeout_ms)
        self._lock = threading.Lock()
        self._script: deque[str] = deque()
        self._nak_left = 0
        self._nak_decoder = ecr.FrameDecoder()
        self._down_until = 0.0
        self._deaf_until = 0.0
        self._scheduled: list[tuple[float, ecr.Message, bool]] = []  # (when, answer, garble)
        self._make_thread("edc-sim")
        self.state: dict[str, Any] = {"invoice": 0, "ledger": [], "last": None}
        if state_path is not None and state_path.exists():
            self.state = json.loads(state_path.read_text())
        self.requests: list[ecr.Message] = []  # every request that reached the terminal

    def script(self, *behaviours: str) -> None:
        with self._lock:
            self._script.extend(behaviours)

    def ledger(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.state["ledger"]]

    def net_charged(self) -> dict[str, int]:
        """Approved sale ecr_ref -> Rupiah still charged after its voids and refunds."""
        out: dict[str, int] = {}
        for r in self.ledger():
            if r["type"] in (ecr.SALE, ecr.QRIS_SALE) and r["response"] == ecr.APPROVED:
                out[r["ecr_ref"]] = 0 if r["voided"] else r["amount"] - r["refunded"]
        return out

    # --- terminal logic ------------------------------------------------------------------

    def _persist(self) -> None:
        if self.state_path is not None:
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.state))
            tmp.replace(self.state_path)

    def _record(self, req: ecr.Message, response: str, amount: int, invoice: str = "") -> dict[str, Any]:
        self.state["invoice"] = self.state["invoice"] % 999999 + 1
        now = dt.datetime.now()
        record = {"type": req.trans_type, "amount": amount, "ecr_ref": req.ecr_ref,
                  "invoice": invoice or f"{self.state['invoice']:06d}",
                  "approval": f"{self.state['invoice'] * 7919 % 1000000:06d}" if response == ecr.APPROVED else "",
                  "rrn": f"{int(now.timestamp()) % 10**6 * 10**6 + self.state['invoice']:012d}",
                  "response": response, "card_type": "QRIS" if req.trans_type == ecr.QRIS_SALE else "DEBIT",
                  "date": now.strftime("%y%m%d"), "time": now.strftime("%H%M%S"),
                  "voided": False, "refunded": 0}
        self.state["ledger"].append(record)
        self.state["last"] = record
        return record

    def _answer(self, record: dict[str, Any]) -> ecr.Message:
        return ecr.Message(record["type"], record["amount"], record["ecr_ref"], record["invoice"], record["approval"],
                           record["rrn"], record["response"], self.tid, self.mid, record["card_type"],
                           record["date"], record["time"])

    def _sale_by_invoice(self, invoice: str) -> dict[str, Any] | None:
        ledger: list[dict[str, Any]] = self.state["ledger"]
        for r in ledger:
            if r["invoice"] == invoice and r["type"] in (ecr.SALE, ecr.QRIS_SALE) and r["response"] == ecr.APPROVED:
                return r
        return None

    def _process(self, req: ecr.Message, behaviour: str) -> dict[str, Any]:
        """Apply a request to the ledger (and persist it) as the bank would answer it."""
        if behaviour.startswith("decline:"):
            return self._record(req, behaviour.split(":", 1)[1][:2], req.amount_idr)
        if req.trans_type in (ecr.SALE, ecr.QRIS_SALE):
            if req.amount_idr <= 0:
                return self._record(req, "13", req.amount_idr)
            return self._record(req, ecr.APPROVED, req.amount_idr)
        sale = self._sale_by_invoice(req.invoice)
        if req.trans_type == ecr.VOID:
            if sale is None or sale["voided"] or sale["refunded"]:
                return self._record(req, ecr.NO_RECORD, req.amount_idr)
            sale["voided"] = True
            return self._record(req, ecr.APPROVED, sale["amount"])
        # refund of part or all of an earlier sale, named by its invoice
        if sale is None or sale["voided"] or sale["refunded"] + req.amount_idr > sale["amount"] or req.amount_idr <= 0:
            return self._record(req, "13" if sale else ecr.NO_RECORD, req.amount_idr)
        sale["refunded"] += req.amount_idr
        return self._record(req, ecr.APPROVED, req.amount_idr)

    def _on_request(self, req: ecr.Message, now: float) -> None:
        self.requests.append(req)
        if req.trans_type == ecr.INQUIRY:
            last = self.state["last"]
            answer = (self._answer(last) if last else
                      ecr.Message(ecr.INQUIRY, 0, "", response=ecr.NO_RECORD, tid=self.tid, mid=self.mid))
            self._scheduled.append((now, answer, False))
            return
        behaviour = self._script.popleft() if self._script else "approve"
        if behaviour.startswith("offline:"):
            behaviour = "approve"  # the deafness was applied on receipt
        if behaviour == "no_answer":
            return
        record = self._process(req, behaviour)
        self._persist()
        if behaviour.startswith("power_cycle:"):
            # Charged and written to the batch; the terminal dies before it answers.
            self._down_until = now + float(behaviour.split(":", 1)[1])
            self._link = ecr.Link(ack_timeout_ms=self._ack_timeout_ms)
            self._scheduled.clear()
            return
        delay = float(behaviour.split(":", 1)[1]) if behaviour.startswith("slow:") else 0.0
        self._scheduled.append((now + delay, self._answer(record), behaviour == "garble"))

    # --- I/O loop ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            data = self.device.read(0.01)
            now = time.monotonic()
            with self._lock:
                if now < self._down_until:
                    continue  # powered off: whatever arrives is lost
                if data and self._script and self._script[0].startswith("offline:") and now >= self._deaf_until:
                    self._deaf_until = now + float(self._script[0].split(":", 1)[1])
                    self._script.popleft()
                if now < self._deaf_until:
                    continue
                nak_next = self._script and self._script[0].startswith("nak:")
                if nak_next and self._nak_left == 0 and bytes([ecr.STX]) in data:
                    self._nak_left = int(self._script.popleft().split(":", 1)[1])
                if data and self._nak_left > 0:
                    passed = bytearray()
                    for event in self._nak_decoder.feed(data, _ms()):
                        if event[0] == "frame" and self._nak_left > 0:
                            self._nak_left -= 1
                            self.device.write(bytes([ecr.NAK]))
                        elif event[0] == "frame":
                            passed += ecr.encode_frame(event[1])
                        elif event[0] in ("ack", "nak"):
                            passed.append(ecr.ACK if event[0] == "ack" else ecr.NAK)
                    data = bytes(passed)
                for event in self._link.feed(data, _ms()) if data else []:
                    if event[0] == "message":
                        self.device.write(self._link.take_output())  # ACK on receipt, before the bank
                        self._on_request(event[1], now)
                self._link.poll(_ms())
                for item in [s for s in self._scheduled if s[0] <= now]:
                    self._scheduled.remove(item)
                    self._link.send(item[1], _ms())
                    out = self._link.take_output()
                    if item[2] and len(out) > 10:
                        garbled = bytearray(out)
                        garbled[8] ^= 0x20
                        out = bytes(garbled)
                    self.device.write(out)
                out = self._link.take_output()
            if out:
                self.device.write(out)
