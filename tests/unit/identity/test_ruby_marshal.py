"""The safe Marshal reader: plain values as real Ruby writes them; every object refused.

Every hex string below is `Marshal.dump(<the Ruby expression in the row>).unpack1("H*")` from
ruby 3.1.2p20 (Debian bookworm), so the reader is checked against Ruby's writer, not against
our own idea of the format.
"""

from __future__ import annotations

import math

import pytest

from strangler.identity.ruby_marshal import MAX_VALUES, MarshalRefused, loads


def _ruby_long(value: int) -> bytes:
    """marshal.c w_long, for building inputs Ruby would need megabytes to produce."""
    if value == 0:
        return b"\x00"
    if 0 < value < 123:
        return bytes([value + 5])
    if -124 < value < 0:
        return bytes([(value - 5) & 0xFF])
    size = (value.bit_length() + 8) // 8
    return bytes([size]) + value.to_bytes(size, "little", signed=True)


@pytest.mark.parametrize(
    ("ruby", "hex_dump", "expected"),
    [
        ("nil", "040830", None),
        ("true", "040854", True),
        ("false", "040846", False),
        ("0", "04086900", 0),
        ("1", "04086906", 1),
        ("122", "0408697f", 122),
        ("123", "040869017b", 123),
        ("255", "04086901ff", 255),
        ("256", "040869020001", 256),
        ("-1", "040869fa", -1),
        ("-123", "04086980", -123),
        ("-124", "040869ff84", -124),
        ("-256", "040869ff00", -256),
        ("-257", "040869fefffe", -257),
        ("2**30", "04086c2b0700000040", 2**30),
        ("2**31-1", "04086c2b07ffffff7f", 2**31 - 1),
        ("-(2**31)", "04086c2d0700000080", -(2**31)),
        ("2**64", "04086c2b0a00000000000000000100", 2**64),
        ("-(2**62)", "04086c2d090000000000000040", -(2**62)),
        ("-(2**70)", "04086c2d0a00000000000000004000", -(2**70)),
        ("1.5", "04086608312e35", 1.5),
        ("0.1", "04086608302e31", 0.1),
        ("1e100", "0408660a3165313030", 1e100),
        ("1.0e-5", "0408660931652d35", 1.0e-5),
        ("123456.789", "0408660f3132333435362e373839", 123456.789),
        ("Float::INFINITY", "04086608696e66", math.inf),
        ("-Float::INFINITY", "040866092d696e66", -math.inf),
        ('"ab\\xff".b (binary: one char per byte)', "040822086162ff", "ab\xff"),
        ('"Zoë" (UTF-8)', "04084922095a6fc3ab063a064554", "Zoë"),
        ('"plain".encode("US-ASCII")', "040849220a706c61696e063a064546", "plain"),
        (
            '"日本".encode("Shift_JIS")',
            "040849220993fa967b063a0d656e636f64696e67220e53686966745f4a4953",
            "日本",
        ),
        (
            '"hi".encode("UTF-16LE")',
            "040849220968006900063a0d656e636f64696e67220d5554462d31364c45",
            "hi",
        ),
        (":user_id", "04083a0c757365725f6964", "user_id"),
        (':"zoë"', "0408493a097a6fc3ab063a064554", "zoë"),
        ("[:a, :b, :a, :b] (symbol links)", "04085b093a06613a06623b003b06", ["a", "b", "a", "b"]),
        ('[1, "two", [3]]', "04085b08690649220874776f063a0645545b066908", [1, "two", [3]]),
        (
            '{"user_id" => 42, :sym => "v", 7 => nil}',
            "04087b0849220c757365725f6964063a064554692f3a0873796d49220676063b0054690c30",
            {"user_id": 42, "sym": "v", 7: None},
        ),
        ('s = "x"; [s, s] (object link)', "04085b0749220678063a0645544006", ["x", "x"]),
        ("[1.5, 1.5] (flonum link)", "04085b076608312e354006", [1.5, 1.5]),
        (
            '["é", "ü"] (ivar symbol link)',
            "04085b07492207c3a9063a064554492207c3bc063b0054",
            ["é", "ü"],
        ),
        (
            '["日", "本"] in Shift_JIS (encoding name linked)',
            "04085b0749220793fa063a0d656e636f64696e67220e53686966745f4a4953492207967b063b004007",
            ["日", "本"],
        ),
        (
            '{:user_id => 1, "flash" => {:notice => "x"}}',
            "04087b073a0c757365725f6964690649220a666c617368063a0645547b063a0b6e6f7469636549220678063b0654",
            {"user_id": 1, "flash": {"notice": "x"}},
        ),
        (
            'a session: {"session_id" => "abc", "warden.user.user.key" => [[42], "salt"], ...}',
            "04087b0849220f73657373696f6e5f6964063a064554492208616263063b005449221977617264656e2e75"
            "7365722e757365722e6b6579063b00545b075b06692f49220973616c74063b005449220a666c617368063b"
            "00547b0749220c64697363617264063b00545b0049220c666c6173686573063b00547b0649220b6e6f7469"
            "6365063b00544922076869063b0054",
            {
                "session_id": "abc",
                "warden.user.user.key": [[42], "salt"],
                "flash": {"discard": [], "flashes": {"notice": "hi"}},
            },
        ),
        (
            "a = [1]; 5.times { a = [a, a] } (shared sub-arrays)",
            "04085b075b075b075b075b075b066906400a4009400840074006",
            [[[[[[1]] * 2] * 2] * 2] * 2] * 2,
        ),
    ],
)
def test_reads_plain_values_as_ruby_writes_them(ruby: str, hex_dump: str, expected: object) -> None:
    value = loads(bytes.fromhex(hex_dump))
    assert value == expected, ruby
    assert type(value) is type(expected)


def test_reads_64_nested_arrays() -> None:
    # ruby -e 'a = []; 63.times { a = [a] }; print Marshal.dump(a)' writes exactly these bytes.
    value = loads(bytes.fromhex("0408" + "5b06" * 63 + "5b00"))
    for _ in range(63):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == []


def test_reads_nan_and_negative_zero() -> None:
    nan = loads(bytes.fromhex("040866086e616e"))  # Float::NAN
    negative_zero = loads(bytes.fromhex("040866072d30"))  # -0.0
    assert isinstance(nan, float) and math.isnan(nan)
    assert isinstance(negative_zero, float) and math.copysign(1.0, negative_zero) == -1.0


@pytest.mark.parametrize(
    ("ruby", "hex_dump", "reason"),
    [
        ("Object.new", "04086f3a0b4f626a65637400", "refused Ruby object (Object)"),
        ("Struct.new(:a) as S; S.new(1)", "0408533a0653063a06616906", "refused Ruby Struct (S)"),
        (
            'ActiveSupport::HashWithIndifferentAccess.new("a" => 1)',
            "0408433a2d416374697665537570706f72743a3a4861736857697468496e646966666572656e74416363"
            "6573737b0649220661063a0645546906",
            "user subclass of a core class (ActiveSupport::HashWithIndifferentAccess)",
        ),
        (
            "Time.utc(2024, 1, 2)",
            "040849753a0954696d650d40001fc000000000063a097a6f6e65492208555443063a064546",
            "refused Ruby _dump value (Time)",
        ),
        (
            '{"last_seen_at" => Time.utc(2024, 1, 2)}',
            "04087b064922116c6173745f7365656e5f6174063a06455449753a0954696d650d40001fc00000000006"
            "3a097a6f6e65492208555443063b0046",
            "refused Ruby _dump value (Time)",
        ),
        (
            "OpenStruct.new(a: 1)",
            "0408553a0f4f70656e5374727563747b063a06616906",
            "marshal_dump value (OpenStruct)",
        ),
        (
            'BigDecimal("1.5")',
            "0408753a0f426967446563696d616c0e31383a302e31356531",
            "_dump value (BigDecimal)",
        ),
        (
            "(1..2)",
            "04086f3a0a52616e6765083a096578636c463a0a626567696e69063a08656e646907",
            "object (Range)",
        ),
        (
            'RuntimeError.new("x")',
            "04086f3a1152756e74696d654572726f72073a096d65736749220678063a0645543a07627430",
            "object (RuntimeError)",
        ),
        ("/ab/", "0408492f07616200063a064546", "refused Ruby Regexp"),
        ("String", "0408630b537472696e67", "refused Ruby class (String)"),
        ("Kernel", "04086d0b4b65726e656c", "refused Ruby module (Kernel)"),
        (
            'Hash.new(5).merge!("a" => 1)',
            "04087d0649220661063a0645546906690a",
            "Hash with a default value",
        ),
        ('"s".dup.extend(M)', "040849653a064d220673063a064554", "refused Ruby extended object (M)"),
        (
            's = "x"; s.instance_variable_set(:@evil, 1); s',
            "040849220678073a0645543a0a406576696c6906",
            "2 instance variables",
        ),
        ("{1.5 => 1}", "04087b066608312e356906", "Hash key of type float"),
        ("{nil => 1}", "04087b06306906", "Hash key of type NoneType"),
        (
            '{"a" => 1, :a => 2}',
            "04087b0749220661063a06455469063a06616907",
            "Hash key 'a' appears twice",
        ),
        ("a = []; a << a", "04085b064000", "makes a cycle"),
        ('"\\xff".force_encoding("UTF-8")', "0408492206ff063a064554", "not valid UTF-8"),
        (
            "a = []; 64.times { a = [a] } (65 nested arrays)",
            "0408" + "5b06" * 64 + "5b00",
            "nested deeper than 64",
        ),
        (
            "a = [1]; 20.times { a = [a, a] } (2**20 values through links)",
            "04085b075b075b075b075b075b075b075b075b075b075b075b075b075b075b075b075b075b075b075b075b"
            "0669064019401840174016401540144013401240114010400f400e400d400c400b400a4009400840074006",
            f"more than {MAX_VALUES} values",
        ),
    ],
)
def test_refuses_objects_and_unsafe_shapes(ruby: str, hex_dump: str, reason: str) -> None:
    with pytest.raises(MarshalRefused) as refused:
        loads(bytes.fromhex(hex_dump))
    assert reason in refused.value.reason, ruby
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize(
    ("case", "data", "reason"),
    [
        ("empty", b"", "header"),
        ("Marshal 4.7", b"\x04\x07i\x06", "header"),
        ("JSON, not Marshal", b'{"a":1}', "header"),
        ("header only", b"\x04\x08", "truncated"),
        ("truncated string", bytes.fromhex("04084922095a6f"), "runs past the end"),
        ("truncated integer", bytes.fromhex("04086902ff"), "truncated"),
        ("array longer than the data", bytes.fromhex("04085b7f"), "runs past the end"),
        ("hash longer than the data", bytes.fromhex("04087b0a6906"), "runs past the end"),
        ("negative length", b"\x04\x08[" + _ruby_long(-3), "negative"),
        ("trailing bytes", bytes.fromhex("04086906") + b"\x00", "trailing"),
        ("object link to nothing", bytes.fromhex("04085b064006"), "link 1 to nothing"),
        ("symbol link to nothing", bytes.fromhex("04083b00"), "symbol link 0 to nothing"),
        ("unknown type byte", bytes.fromhex("040821"), "unknown type byte 0x21"),
        ("bignum without a sign", bytes.fromhex("04086c3f0600000000"), "sign"),
        ("bignum of 258 bytes", b"\x04\x08l+" + _ruby_long(129) + b"\x01" * 258, "Bignum of 258"),
        ("float text with mantissa bytes", b"\x04\x08f" + _ruby_long(5) + b"1.5\x00\x01", "Float"),
        ("float text Python alone would take", b"\x04\x08f" + _ruby_long(3) + b"1_0", "Float"),
        ("ivar on an array", b"\x04\x08I[\x00\x06:\x06ET", "not a String or Symbol"),
        ("unknown encoding", b'\x04\x08I"\x06x\x06:\x0dencoding"\x08nop', "not decodable"),
        (
            "bytes codec as encoding",
            b'\x04\x08I"\x06x\x06:\x0dencoding"\x0fzlib_codec',
            "not decodable",
        ),
        ("E that is not a boolean", b'\x04\x08I"\x06x\x06:\x06Ei\x06', "refused instance variable"),
        (
            "100,001 values",
            b"\x04\x08[" + _ruby_long(MAX_VALUES + 1) + b"i\x00" * (MAX_VALUES + 1),
            "more than",
        ),
    ],
)
def test_refuses_malformed_data(case: str, data: bytes, reason: str) -> None:
    with pytest.raises(MarshalRefused) as refused:
        loads(data)
    assert reason in refused.value.reason, case


def test_reads_up_to_the_value_limit() -> None:
    count = MAX_VALUES - 1  # the array itself is one value
    value = loads(b"\x04\x08[" + _ruby_long(count) + b"i\x00" * count)
    assert isinstance(value, list) and len(value) == count


def test_refusal_names_the_offset() -> None:
    with pytest.raises(MarshalRefused) as refused:
        loads(bytes.fromhex("04085b0769066f3a0b4f626a65637400"))  # [1, Object.new]
    assert refused.value.offset == 6
    assert "at byte 6" in str(refused.value)
