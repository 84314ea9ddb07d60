"""Frozen wire vectors of the relay-board protocol (version 1): (type, seq, values, frame hex).
Both interpreters must encode exactly these bytes and decode them back. Generated once from
the codec and then frozen: a change here is a protocol change."""

VECTORS = [
    (0x00, 0, (42,), "a5040100002a6b96"),
    (0x01, 0, (), "a503010001380d"),
    (0x02, 7, (3, 3735928559, 123456), "a50c01070203deadbeef0001e24054d2"),
    (0x03, 7, (2,), "a504010703021e3f"),
    (0x04, 0, (1,), "a50401000401325b"),
    (0x05, 7, (1, 3405705229), "a50801070501cafef00d677a"),
    (0x81, 0, (1, 19, 16909060, 77, 4294967295), "a5110100810113010203040000004dffffffff2822"),
    (0x82, 7, (0, 42, 1000, 2, 987654), "a511010782000000002a000003e802000f1206b882"),
    (0x83, 7, (1, 1), "a5050107830101f777"),
    (0x84, 7, (0, 1, 5), "a50901078400010000000578c7"),
    (0x85, 7, (1, 4, 0, 305419896), "a50a01078501040012345678b70f"),
]
CRC_CHECK = (b"123456789", 0x29B1)  # CRC-16/CCITT-FALSE check value

# An ECR sale of Rp 150.000 (hal/ecr_proto.py): STX, BCD length 0099, 99 ASCII bytes, ETX, LRC
ECR_SALE_HEX = ("020099303130313030303031353030303030305458303030303031202020203030303030302020202020"
                "202020202020202020202020202020202020202020202020202020202020202020202020202020202020"
                "20202020202032363131323331303135303003b3")
