"""Codec vectors and the firmware's safety logic, runnable on MicroPython and CPython alike.

Run with this directory and the project root on the module path; prints one line per
check ("PASS name" / "FAIL name: detail") and a final "N passed, M failed" line.
"""

import machine

from hal import dart_master
from hal import dart_proto as dart
from hal import tls_proto as tls
from hal import ecr_proto as ecr
from hal import relay_proto as rp
from hal.crc16 import crc16_ccitt
from hal.firmware import main as fw
from vectors import CRC_CHECK, ECR_SALE_HEX, VECTORS

results = [0, 0]


def check(name, condition, detail=""):
    if condition:
        results[0] += 1
        print("PASS " + name)
    else:
        results[1] += 1
        print("FAIL " + name + ": " + str(detail))


def to_hex(data):
    return "".join("%02x" % b for b in data)


# --- codec ------------------------------------------------------------------------------

check("crc_check_value", crc16_ccitt(CRC_CHECK[0]) == CRC_CHECK[1], crc16_ccitt(CRC_CHECK[0]))
for mtype, seq, values, frame_hex in VECTORS:
    frame = rp.encode_frame(seq, mtype, rp.encode_payload(mtype, values))
    check("encode_0x%02x" % mtype, to_hex(frame) == frame_hex, to_hex(frame))
    decoded = rp.FrameDecoder().feed(frame)
    ok = len(decoded) == 1 and decoded[0][1] == mtype and rp.decode_payload(mtype, decoded[0][2]) == values
    check("decode_0x%02x" % mtype, ok, decoded)

decoder = rp.FrameDecoder()
good = rp.encode_frame(7, rp.STOP, rp.encode_payload(rp.STOP, (1,)))
flipped = bytearray(good)
flipped[5] ^= 0x01
out = decoder.feed(b"\x00\xa5\xff" + bytes(flipped) + good)
check("bit_flip_rejected_then_resync", len(out) == 1 and out[0][1] == rp.STOP and decoder.rejected >= 1, out)

a = rp.Link()
b = rp.Link()
a.send(rp.AUTHORIZE, (0, 9, 100), 0)
a.take_output()  # lost on the wire
a.poll(a.retry_ms)
got = b.feed(a.take_output(), a.retry_ms)
a.feed(b.take_output(), a.retry_ms)
check("retransmitted_once_delivered", got == [(rp.AUTHORIZE, (0, 9, 100))] and a.in_flight == 0, got)

# --- DART codec ---------------------------------------------------------------------------

captured = bytes([0x50, 0x30, 0x01, 0x01, 0x00, 0x9F, 0x5C, 0x03, 0xFA])
check("dart_captured_frame", dart.encode_frame(0x50, dart.DATA, dart.cmd(dart.CMD_RETURN_STATUS)) == captured)
events = dart.LineDecoder().feed(captured)
check("dart_decode", events == [("frame", 0x50, 0x30, bytes([1, 1, 0]))], events)
reply = dart.encode_frame(0x50, dart.DATA | 1, dart.status(dart.ST_FILLING) + dart.filled(1234, 125500))
fields = [dart.decode_transaction(c, x, True) for c, x in dart.split_transactions(dart.LineDecoder().feed(reply)[0][3])]
check("dart_reply_fields", fields == [("status", 4), ("filled", 1234, 125500)], fields)

allowed = dart.allowed_nozzles([2])
check("dart_allowed_nozzles", dart.decode_transaction(allowed[0], allowed[2:], False) == ("allowed_nozzles", [2]))

# --- DART line master: a dead pump never blocks a STOP to another -----------------------

master = dart_master.DartMaster([0x50, 0x51])
t = 0
for _ in range(40):  # 0x50 never answers; 0x51 answers every frame at once
    frame = master.due(t)
    if frame is not None and frame[0] == 0x51:
        if frame[1] & 0xF0 == dart.DATA:
            master.feed(dart.encode_short(0x51, dart.ACK | (frame[1] & 0x0F)), t + 5)
        else:
            master.feed(dart.encode_short(0x51, dart.EOT), t + 5)
    t += 50
master.send(0x51, dart.cmd(dart.CMD_STOP), True)
sent_at = None
for step in range(20):
    frame = master.due(t)
    if frame is not None and frame[0] == 0x51 and frame[1] & 0xF0 == dart.DATA:
        sent_at = step
        break
    if frame is not None and frame[0] == 0x51:
        master.feed(dart.encode_short(0x51, dart.EOT), t + 5)
    t += 10
check("dart_master_dead_pump_out_of_service", master.out_of_service[0x50] and not master.out_of_service[0x51],
      master.out_of_service)
check("dart_master_stop_first", sent_at is not None and sent_at <= 16, sent_at)

# --- TLS tank gauge codec --------------------------------------------------------------

check("tls_command", tls.command("201") == bytes([1]) + b"i20100")
body = "i201002611300830011000007468CA000468B7480463B800044BB800041A0000041EC000041A00000"
tls_frame = tls.frame(body.encode())
total = 0
for byte in tls_frame[:-5]:
    total += byte
check("tls_checksum_zero_sum", (total + int(tls_frame[-5:-1], 16)) % 0x10000 == 0, tls_frame)
tls_events = tls.Decoder().feed(tls_frame)
tls_stamp, tls_tanks = tls.parse_inventory(tls_events[0][3])
check("tls_inventory", tls_stamp == "2026-11-30T08:30" and tls_tanks[0][3]["volume"] == 18000.0
      and tls_tanks[0][3]["temperature"] == 29.5, tls_tanks)
check("tls_bad_checksum", tls.Decoder().feed(tls_frame[:-2] + b"0" + tls_frame[-1:])[0][0] == "error")

# --- firmware safety logic on the fake machine --------------------------------------------


class Clock:
    def __init__(self):
        self.t = 0

    def ticks_ms(self):
        return self.t

    def ticks_diff(self, x, y):
        return x - y

    def sleep_ms(self, ms):
        self.t += ms


clock = Clock()
firmware = fw.Firmware(machine, channels=2, boot_id=77, clock=clock)
uart = machine.UART.last
pins = machine.Pin.registry
host = rp.Link()
inbox = []


def exchange(ms=10):
    clock.t += ms
    uart.rx.extend(host.take_output())
    firmware.step()
    inbox.extend(host.feed(bytes(uart.tx), clock.t))
    uart.tx = bytearray()


def relay(i):
    return pins[fw.RELAY_PINS[i]].value()


def ends():
    return [v for t, v in inbox if t == rp.END]


check("relays_off_at_boot", relay(0) == 0 and relay(1) == 0)
pins[fw.ESTOP_PIN].drive(0)  # E-stop loop closed: not pressed
exchange()
check("board_hello_sent", [v for t, v in inbox if t == rp.BOARD_HELLO] == [(1, 2, 0, 77)], inbox)

host.send(rp.AUTHORIZE, (0, 1, 50), clock.t)
exchange()
check("no_heartbeat_no_fuel", relay(0) == 0 and ends() and ends()[-1][3] == rp.END_REJECTED, ends())


def heartbeat():
    host.send(rp.HEARTBEAT, (), clock.t)
    exchange()


heartbeat()
host.send(rp.AUTHORIZE, (0, 2, 50), clock.t)
exchange()
check("authorised_relay_closes", relay(0) == 1)
pins[fw.NOZZLE_PINS[0]].drive(0)
heartbeat()
for _ in range(49):
    pins[fw.PULSER_PINS[0]].falling_edge()
check("relay_closed_before_preset", relay(0) == 1)
pins[fw.PULSER_PINS[0]].falling_edge()
# The 50th pulse cut the relay in the interrupt handler, before any loop pass.
check("preset_cut_in_interrupt", relay(0) == 0)
pins[fw.PULSER_PINS[0]].falling_edge()  # valve overrun while settling
for _ in range(40):
    heartbeat()
done = [e for e in ends() if e[1] == 2]
check("preset_end_counts_overrun", done == [(0, 2, 51, rp.END_PRESET_REACHED, 51)], done)
pins[fw.NOZZLE_PINS[0]].drive(1)
heartbeat()

host.send(rp.AUTHORIZE, (1, 3, 1000), clock.t)
exchange()
check("second_channel_authorised", relay(1) == 1)
clock.t += 800  # the agent dies: no heartbeat for longer than the dead-man
firmware.step()
check("heartbeat_loss_opens_relay", relay(1) == 0)
for _ in range(40):
    exchange(10)
lost = [e for e in ends() if e[1] == 3]
check("heartbeat_loss_reported", lost and lost[0][3] == rp.END_HEARTBEAT_LOST, lost)

heartbeat()
host.send(rp.AUTHORIZE, (0, 4, 1000), clock.t)
host.send(rp.AUTHORIZE, (1, 5, 1000), clock.t)
exchange()
check("both_authorised", relay(0) == 1 and relay(1) == 1)
pins[fw.ESTOP_PIN].drive(1)  # E-stop pressed (or its wire cut)
exchange()
check("estop_opens_every_relay", relay(0) == 0 and relay(1) == 0)
pins[fw.ESTOP_PIN].drive(0)  # released, but latched until the local reset
for _ in range(40):
    heartbeat()  # the stopped fills settle and end
stopped = [e for e in ends() if e[1] in (4, 5)]
check("estop_ends_fills", len(stopped) == 2 and all(e[3] == rp.END_ESTOP for e in stopped), stopped)
host.send(rp.AUTHORIZE, (0, 6, 1000), clock.t)
exchange()
check("estop_latched", relay(0) == 0 and [e for e in ends() if e[1] == 6][0][3] == rp.END_REJECTED)
pins[fw.RESET_PIN].drive(0)
heartbeat()
pins[fw.RESET_PIN].drive(1)
host.send(rp.AUTHORIZE, (0, 7, 1000), clock.t)
exchange()
check("local_reset_clears_latch", relay(0) == 1)
check("hardware_watchdog_fed", machine.WDT.last.feeds > 10 and machine.WDT.last.timeout <= 8388)

# --- ECR codec (EDC card terminal) -----------------------------------------------------

sale = ecr.Message(ecr.SALE, 150000, "TX000001", date="261123", time="101500")
frame = ecr.encode_message(sale)
check("ecr_encode_sale", to_hex(frame) == ECR_SALE_HEX, to_hex(frame))
got = ecr.FrameDecoder().feed(frame, 0)
check("ecr_decode_sale", len(got) == 1 and got[0][0] == "frame" and ecr.decode_data(got[0][1]) == sale, got)
flipped = bytearray(frame)
flipped[20] ^= 0x04
receiver = ecr.Link()
events = receiver.feed(bytes(flipped), 0)
check("ecr_bit_flip_naked", events == [] and receiver.take_output() == bytes([ecr.NAK]), events)
sender = ecr.Link(ack_timeout_ms=2000, max_retries=3)
sender.send(sale, 0)
sender.take_output()
sender.feed(bytes([ecr.NAK]), 1)
retried = sender.take_output() == frame
sender.poll(2001)
sender.take_output()
sender.feed(bytes([ecr.NAK]), 2002)
last = sender.feed(bytes([ecr.NAK]), 2003)
check("ecr_three_retransmissions_then_failed", retried and last == [("send_failed", "nak")], last)

print("%d passed, %d failed" % (results[0], results[1]))
