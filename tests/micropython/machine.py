"""A fake `machine` module for the firmware's safety tests, written in the MicroPython
subset so the very same tests run on real MicroPython (WebAssembly, under Node) and on
CPython. Pins are plain levels; a pulse calls the interrupt handler as the chip would."""


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8
    registry = {}

    def __init__(self, pin_id, mode=0, pull=None, value=None):
        self.id = pin_id
        self.mode = mode
        if value is not None:
            self._level = value
        elif pull == 1:
            self._level = 1
        else:
            self._level = 0
        self._handler = None
        Pin.registry[pin_id] = self

    def value(self, level=None):
        if level is not None:
            self._level = 1 if level else 0
        return self._level

    def irq(self, trigger=0, handler=None):
        self._handler = handler

    def drive(self, level):
        self._level = level

    def falling_edge(self):
        if self._handler is not None:
            self._handler(self)


class UART:
    last = None

    def __init__(self, uart_id, baudrate=115200, **kwargs):
        self.rx = bytearray()
        self.tx = bytearray()
        UART.last = self

    def read(self, nbytes=-1):
        if not self.rx:
            return None
        data = bytes(self.rx)
        self.rx = bytearray()
        return data

    def write(self, data):
        self.tx.extend(data)
        return len(data)


class WDT:
    last = None

    def __init__(self, timeout=5000, **kwargs):
        self.timeout = timeout
        self.feeds = 0
        WDT.last = self

    def feed(self):
        self.feeds += 1


def disable_irq():
    return 0


def enable_irq(state):
    pass


class BoardReset(Exception):
    pass


def reset():
    raise BoardReset()


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1
    armed = []

    def __init__(self, timer_id=-1):
        self.callback = None
        self.period = 0

    def init(self, mode=0, period=1000, callback=None):
        self.period = period
        self.callback = callback
        Timer.armed.append(self)

    def fire(self):
        Timer.armed.remove(self)
        self.callback(self)
