"""An independent reader of TensorBoard event files for the tests: TFRecord framing with
CRC-32C from python3-crcmod, and the Event, Summary and custom-scalars Layout messages
built with python3-protobuf from TensorFlow's own field numbers (tensorflow/core/util/
event.proto, core/framework/summary.proto, tensor.proto, tensorboard/plugins/
custom_scalar/layout.proto), not from emerge's .proto file."""
import struct

import crcmod.predefined
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_crc = crcmod.predefined.mkCrcFun("crc-32c")
F = descriptor_pb2.FieldDescriptorProto


def masked(data):
    c = _crc(data)
    return (((c >> 15) | (c << 17)) + 0xa282ead8) & 0xFFFFFFFF


def _message(fp, name, fields, oneofs=()):
    m = fp.message_type.add(name=name)
    for o in oneofs:
        m.oneof_decl.add(name=o)
    for fname, number, ftype, label, type_name, oneof in fields:
        f = m.field.add(name=fname, number=number, type=ftype, label=label)
        if type_name:
            f.type_name = type_name
        if oneof is not None:
            f.oneof_index = oneof
    return m


def _classes():
    fp = descriptor_pb2.FileDescriptorProto(name="tf_test.proto", package="tft", syntax="proto3")
    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    _message(fp, "TensorShapeProto", [])
    _message(fp, "TensorProto", [("dtype", 1, F.TYPE_INT32, opt, None, None),
                                 ("tensor_shape", 2, F.TYPE_MESSAGE, opt, ".tft.TensorShapeProto", None),
                                 ("string_val", 8, F.TYPE_BYTES, rep, None, None)])
    _message(fp, "PluginData", [("plugin_name", 1, F.TYPE_STRING, opt, None, None),
                                ("content", 2, F.TYPE_BYTES, opt, None, None)])
    _message(fp, "SummaryMetadata", [("plugin_data", 1, F.TYPE_MESSAGE, opt, ".tft.PluginData", None)])
    _message(fp, "Value", [("tag", 1, F.TYPE_STRING, opt, None, None),
                           ("simple_value", 2, F.TYPE_FLOAT, opt, None, 0),
                           ("tensor", 8, F.TYPE_MESSAGE, opt, ".tft.TensorProto", 0),
                           ("metadata", 9, F.TYPE_MESSAGE, opt, ".tft.SummaryMetadata", None)], ["value"])
    _message(fp, "Summary", [("value", 1, F.TYPE_MESSAGE, rep, ".tft.Value", None)])
    _message(fp, "Event", [("wall_time", 1, F.TYPE_DOUBLE, opt, None, None),
                           ("step", 2, F.TYPE_INT64, opt, None, None),
                           ("file_version", 3, F.TYPE_STRING, opt, None, 0),
                           ("summary", 5, F.TYPE_MESSAGE, opt, ".tft.Summary", 0)], ["what"])
    _message(fp, "Series", [("value", 1, F.TYPE_STRING, opt, None, None), ("lower", 2, F.TYPE_STRING, opt, None, None),
                            ("upper", 3, F.TYPE_STRING, opt, None, None)])
    _message(fp, "MarginChartContent", [("series", 1, F.TYPE_MESSAGE, rep, ".tft.Series", None)])
    _message(fp, "MultilineChartContent", [("tag", 1, F.TYPE_STRING, rep, None, None)])
    _message(fp, "Chart", [("title", 1, F.TYPE_STRING, opt, None, None),
                           ("multiline", 2, F.TYPE_MESSAGE, opt, ".tft.MultilineChartContent", 0),
                           ("margin", 3, F.TYPE_MESSAGE, opt, ".tft.MarginChartContent", 0)], ["content"])
    _message(fp, "Category", [("title", 1, F.TYPE_STRING, opt, None, None),
                              ("chart", 2, F.TYPE_MESSAGE, rep, ".tft.Chart", None),
                              ("closed", 3, F.TYPE_BOOL, opt, None, None)])
    _message(fp, "Layout", [("version", 1, F.TYPE_INT32, opt, None, None),
                            ("category", 2, F.TYPE_MESSAGE, rep, ".tft.Category", None)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fp)
    get = getattr(message_factory, "GetMessageClass", None)
    if get is None:
        factory = message_factory.MessageFactory(pool)
        return {n: factory.GetPrototype(pool.FindMessageTypeByName(f"tft.{n}")) for n in ("Event", "Layout")}
    return {n: get(pool.FindMessageTypeByName(f"tft.{n}")) for n in ("Event", "Layout")}


_CLASSES = None


def records(data):
    """The payloads of every record, checking both CRCs; raises on a corrupt or torn one."""
    out, off = [], 0
    while off < len(data):
        if len(data) - off < 12:
            raise ValueError(f"torn record header at byte {off}")
        (n,) = struct.unpack_from("<Q", data, off)
        (lcrc,) = struct.unpack_from("<I", data, off + 8)
        if lcrc != masked(data[off:off + 8]):
            raise ValueError(f"bad length CRC at byte {off}")
        if len(data) - off < 16 + n:
            raise ValueError(f"torn record at byte {off}")
        payload = data[off + 12:off + 12 + n]
        (dcrc,) = struct.unpack_from("<I", data, off + 12 + n)
        if dcrc != masked(payload):
            raise ValueError(f"bad data CRC at byte {off}")
        out.append(payload)
        off += 16 + n
    return out


def events(path):
    """Every Event of an event file, decoded."""
    global _CLASSES
    _CLASSES = _CLASSES or _classes()
    with open(path, "rb") as f:
        data = f.read()
    evs = []
    for payload in records(data):
        ev = _CLASSES["Event"]()
        ev.ParseFromString(payload)
        evs.append(ev)
    return evs


def layout(ev):
    global _CLASSES
    _CLASSES = _CLASSES or _classes()
    lay = _CLASSES["Layout"]()
    lay.ParseFromString(ev.summary.value[0].tensor.string_val[0])
    return lay


def scalars(path):
    """{step: {tag: value}} of the simple_value summaries."""
    out = {}
    for ev in events(path):
        if ev.WhichOneof("what") == "summary":
            for v in ev.summary.value:
                if v.WhichOneof("value") == "simple_value":
                    out.setdefault(ev.step, {})[v.tag] = v.simple_value
    return out
