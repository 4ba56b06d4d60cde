"""Compact, exact wire format of bus events: ``encode(event) -> bytes`` and ``decode(bytes) -> Event``.

Used by the Redis bus (the in-process bus passes the objects themselves). A message is::

    b"CRB" + version byte | uint32 LE header length | header (UTF-8 JSON) | pad to 8 | buffer 0 | pad | buffer 1 ...

The header names the event type (a key of :data:`cryptorsi.events.EVENT_TYPES`), holds the scalar fields as
JSON and *describes* every array; the arrays themselves follow as raw little-endian buffers (numpy
``tobytes``), each aligned to 8 bytes, so an 8,400-candle frame costs its raw size (~400 kB) plus a few
hundred header bytes instead of megabytes of JSON text. Nothing is pickled: decoding only builds
registered dataclasses, numpy arrays and pandas objects.

Exactness: a round trip returns an equal event — floats bit-identical (array buffers are the raw bytes;
non-finite or numpy scalars are stored as their bytes in hex), int/bool/str/None kept apart, tuples stay
tuples, lists lists, dicts dicts; ``pd.Timestamp`` keeps its unit and time zone; Series/DataFrames keep
index (Range/Datetime with freq/Multi/plain), dtypes (numpy, tz-aware datetimes, pandas ``str``/``string``,
nullable Int/Float/boolean, categorical, object columns holding any encodable values), names and column order.

JSON values are tagged with one-key objects whose key starts with ``$`` (``{"$t": [...]}`` is a tuple);
dicts are always wrapped (``{"$d": {...}}``), so a user dict never collides with a tag.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import struct
from typing import Any

import numpy as np
import pandas as pd

from cryptorsi.events import EVENT_TYPES, Event, ExcludedCoin, SourceSpec
from cryptorsi.market import Coin, Listing, Market

__all__ = ["encode", "decode", "CodecError", "MAGIC", "VERSION", "register_dataclass"]

MAGIC = b"CRB"
VERSION = 1
_PREFIX = struct.Struct("<3sBI")  # magic, version, header length
_ALIGN = 8
_INLINE_STRINGS = 32  # string arrays up to this many items (and 16 chars each on average) stay in the header
_F64 = struct.Struct("<d")


class CodecError(ValueError):
    """A value that cannot be encoded, or bytes that are not a valid cryptorsi bus message."""


#: dataclasses (besides events) that may appear inside events, by class name. Decoding builds nothing else.
_DATACLASSES: dict[str, type] = {cls.__name__: cls for cls in (Coin, Market, Listing, ExcludedCoin, SourceSpec)}


def register_dataclass(cls: type) -> type:
    """Allow instances of dataclass ``cls`` inside events (usable as a decorator)."""
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise TypeError(f"{cls!r} is not a dataclass")
    known = _DATACLASSES.get(cls.__name__) or EVENT_TYPES.get(cls.__name__)
    if known is not None and known is not cls:
        raise CodecError(f"another dataclass named {cls.__name__!r} is already registered")
    _DATACLASSES[cls.__name__] = cls
    return cls


def _dataclass_named(name: str) -> type | None:
    return _DATACLASSES.get(name) or EVENT_TYPES.get(name)


# ====================================================================================================== encode
def encode(event: Event) -> bytes:
    """The bytes of ``event`` (an instance of a type in ``EVENT_TYPES``); :class:`CodecError` otherwise."""
    cls = type(event)
    name = cls.__name__
    if EVENT_TYPES.get(name) is not cls:
        raise CodecError(
            f"cannot encode {cls.__module__}.{cls.__qualname__}: not an event type of cryptorsi.events.EVENT_TYPES")
    enc = _Encoder()
    fields = {f.name: enc.value(getattr(event, f.name), f.name) for f in dataclasses.fields(event)}
    header = {"t": name, "f": fields}
    if enc.buffers:
        header["b"] = [len(b) for b in enc.buffers]
    try:
        head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("ascii")
    except ValueError as exc:  # a non-finite float slipped through: a codec bug
        raise CodecError(f"cannot encode {name}: {exc}") from None
    out = bytearray(_PREFIX.pack(MAGIC, VERSION, len(head)))
    out += head
    for buf in enc.buffers:
        out += bytes(-len(out) % _ALIGN)
        out += buf
    return bytes(out)


class _Encoder:
    def __init__(self) -> None:
        self.buffers: list[bytes | memoryview] = []

    def buffer(self, data: bytes | memoryview) -> int:
        self.buffers.append(data)
        return len(self.buffers) - 1

    # ---------------------------------------------------------------------------------------------- values
    def value(self, v: Any, where: str) -> Any:
        t = type(v)
        if v is None or t is str or t is bool:
            return v
        if t is int:
            return v
        if t is float:
            return v if math.isfinite(v) else {"$f": _F64.pack(v).hex()}
        if isinstance(v, np.generic):
            if isinstance(v, (np.void, np.object_)) or v.dtype.kind in "OUSV":
                if isinstance(v, np.str_):
                    return {"$n": "U", "v": str(v)}
                raise CodecError(f"{where}: numpy scalar of dtype {v.dtype} is not supported")
            le = np.asarray(v).astype(v.dtype.newbyteorder("<"))
            return {"$n": le.dtype.str, "h": le.tobytes().hex()}
        if t is tuple:
            return {"$t": [self.value(x, where) for x in v]}
        if t is list:
            return [self.value(x, where) for x in v]
        if t is dict:
            if all(type(k) is str for k in v):
                return {"$d": {k: self.value(x, f"{where}[{k!r}]") for k, x in v.items()}}
            return {"$m": [[self.value(k, where), self.value(x, f"{where}[{k!r}]")] for k, x in v.items()]}
        if t is frozenset or t is set:
            return {"$fs" if t is frozenset else "$set": [self.value(x, where) for x in v]}
        if t is bytes:
            return {"$b": self.buffer(v)}
        if v is pd.NaT:
            return {"$nat": 1}
        if v is pd.NA:
            return {"$na": 1}
        if isinstance(v, pd.Timestamp):
            return {"$ts": int(v.asm8.view("i8")), "u": v.unit, "tz": _tz_desc(v.tzinfo, where)}
        if isinstance(v, pd.Timedelta):
            return {"$td": int(v.asm8.view("i8")), "u": v.unit}
        if isinstance(v, pd.DataFrame):
            return {"$df": self.frame(v, where)}
        if isinstance(v, pd.Series):
            return {"$s": self.series(v, where)}
        if isinstance(v, pd.Index):
            return {"$i": self.index(v, where)}
        if isinstance(v, np.ndarray):
            return {"$a": self.ndarray(v, where)}
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            if _dataclass_named(t.__name__) is not t:
                raise CodecError(
                    f"{where}: dataclass {t.__module__}.{t.__qualname__} is not registered "
                    "(see cryptorsi.runtime.codec.register_dataclass)"
                )
            return {"$c": t.__name__, "f": {f.name: self.value(getattr(v, f.name), f"{where}.{f.name}")
                                            for f in dataclasses.fields(v)}}
        raise CodecError(f"{where}: cannot encode a value of type {t.__module__}.{t.__qualname__}")

    # ---------------------------------------------------------------------------------------------- arrays
    def ndarray(self, a: np.ndarray, where: str) -> dict:
        """Any numpy array: raw little-endian bytes (C order), or a str/object layout for object arrays."""
        if a.dtype.kind == "O":
            if a.ndim != 1:
                raise CodecError(f"{where}: object arrays must be one-dimensional")
            return self.objects(a, where)
        if a.dtype.kind == "V" or a.dtype.hasobject:
            raise CodecError(f"{where}: structured arrays (dtype {a.dtype}) are not supported")
        le = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<") if a.dtype.byteorder != "|" else a.dtype)
        raw = memoryview(le.reshape(-1).view(np.uint8))  # datetime64 has no buffer protocol: view as bytes
        return {"k": "n", "d": le.dtype.str, "s": list(le.shape), "b": self.buffer(raw)}

    def objects(self, a: np.ndarray, where: str) -> dict:
        values = a.tolist()
        if all(type(x) is str or x is None for x in values):
            return self.strings(values)
        return {"k": "o", "v": [self.value(x, where) for x in values]}

    def strings(self, values: list[str | None]) -> dict:
        """A list of str/None: inline JSON when short (column labels), else UTF-8 bytes + int64 offsets + None mask."""
        if len(values) <= _INLINE_STRINGS and sum(len(x) for x in values if x is not None) <= 16 * _INLINE_STRINGS:
            return {"k": "s", "j": values}
        parts = [b"" if x is None else x.encode("utf-8", "surrogatepass") for x in values]
        offsets = np.zeros(len(parts) + 1, dtype="<i8")
        np.cumsum([len(p) for p in parts], out=offsets[1:])
        desc = {"k": "s", "o": self.buffer(offsets.tobytes()), "b": self.buffer(b"".join(parts)), "n": len(parts)}
        nulls = [x is None for x in values]
        if any(nulls):
            desc["m"] = self.buffer(np.array(nulls, dtype="|b1").tobytes())
        return desc

    def array(self, arr: Any, where: str) -> dict:
        """A 1-d column: numpy array or pandas extension array."""
        if isinstance(arr, np.ndarray):
            return self.ndarray(arr, where)
        dtype = arr.dtype
        if isinstance(dtype, pd.DatetimeTZDtype):
            i8 = np.asarray(arr.to_numpy(dtype=f"datetime64[{dtype.unit}]")).view("i8")
            return {"k": "dtz", "u": dtype.unit, "tz": _tz_desc(dtype.tz, where), "v": self.ndarray(i8, where)}
        if isinstance(dtype, pd.StringDtype):
            na = dtype.na_value
            na_desc = "NA" if na is pd.NA else "nan" if isinstance(na, float) and math.isnan(na) else None
            if na_desc is None:
                raise CodecError(f"{where}: string dtype with na_value {na!r} is not supported")
            values = arr.to_numpy(dtype=object, na_value=None).tolist()
            return {"k": "str", "st": dtype.storage, "na": na_desc, "v": self.strings(values)}
        if isinstance(dtype, pd.CategoricalDtype):
            return {"k": "cat", "c": self.index(dtype.categories, where), "o": bool(dtype.ordered),
                    "v": self.ndarray(np.asarray(arr.codes), where)}
        if isinstance(arr, _MASKED_ARRAYS):
            mask = np.asarray(arr.isna(), dtype=bool)
            zero = dtype.numpy_dtype.type(0)
            data = arr.to_numpy(dtype=dtype.numpy_dtype, na_value=zero)
            return {"k": "mask", "d": dtype.name, "v": self.ndarray(data, where), "m": self.ndarray(mask, where)}
        raise CodecError(f"{where}: cannot encode an array of dtype {dtype}")

    # ---------------------------------------------------------------------------------------------- pandas
    def index(self, idx: pd.Index, where: str) -> dict:
        if isinstance(idx, pd.RangeIndex):
            return {"k": "range", "a": idx.start, "z": idx.stop, "p": idx.step, "n": self.value(idx.name, where)}
        if isinstance(idx, pd.MultiIndex):
            return {"k": "multi", "l": [self.index(level, where) for level in idx.levels],
                    "c": [self.ndarray(np.asarray(c), where) for c in idx.codes],
                    "n": [self.value(n, where) for n in idx.names]}
        if isinstance(idx, (pd.PeriodIndex, pd.IntervalIndex)):
            raise CodecError(f"{where}: {type(idx).__name__} is not supported")
        values = idx.to_numpy() if isinstance(idx.dtype, np.dtype) else idx.array
        desc = {"k": "idx", "v": self.array(values, where), "n": self.value(idx.name, where)}
        freq = getattr(idx, "freq", None)
        if freq is not None:
            desc["fq"] = freq.freqstr
        return desc

    def series(self, s: pd.Series, where: str) -> dict:
        return {"n": self.value(s.name, where), "i": self.index(s.index, where),
                "v": self.array(_column_values(s), where)}

    def frame(self, df: pd.DataFrame, where: str) -> dict:
        cols = [self.array(_column_values(df.iloc[:, i]), f"{where}[{df.columns[i]!r}]") for i in range(df.shape[1])]
        return {"i": self.index(df.index, where), "c": self.index(df.columns, where), "v": cols}


_MASKED_ARRAYS = (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)


def _column_values(s: pd.Series) -> Any:
    return s.to_numpy(copy=False) if isinstance(s.dtype, np.dtype) else s.array


def _tz_desc(tz: Any, where: str) -> Any:
    """A JSON description of a time zone: None, an IANA name, or {"o": offset seconds}."""
    if tz is None:
        return None
    if tz is _dt.timezone.utc:
        return "UTC"
    key = getattr(tz, "key", None) or getattr(tz, "zone", None)  # zoneinfo / pytz
    if isinstance(key, str):
        return key
    if isinstance(tz, _dt.timezone):
        offset = tz.utcoffset(None)
        return {"o": offset.total_seconds()}
    name = str(tz)
    if name == "UTC":
        return name
    raise CodecError(f"{where}: time zone {tz!r} is not supported")


# ====================================================================================================== decode
def decode(data: bytes | bytearray | memoryview) -> Event:
    """The event encoded in ``data``; :class:`CodecError` for anything else (unknown type, bad bytes)."""
    buf = bytearray(data)  # one writable copy: arrays decoded from it are writable views
    if len(buf) < _PREFIX.size:
        raise CodecError("not a cryptorsi bus message (too short)")
    magic, version, head_len = _PREFIX.unpack_from(buf)
    if magic != MAGIC:
        raise CodecError("not a cryptorsi bus message (bad magic)")
    if version != VERSION:
        raise CodecError(f"bus message version {version} is not supported (this cryptorsi reads version {VERSION})")
    end = _PREFIX.size + head_len
    try:
        header = json.loads(bytes(buf[_PREFIX.size:end]))
        name, fields = header["t"], header["f"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CodecError(f"corrupt bus message header: {exc}") from None
    cls = EVENT_TYPES.get(name)
    if cls is None:
        raise CodecError(
            f"unknown event type {name!r} (not in cryptorsi.events.EVENT_TYPES; another cryptorsi version?)")
    views: list[memoryview] = []
    pos = end
    mv = memoryview(buf)
    for size in header.get("b", []):
        pos += -pos % _ALIGN
        if pos + size > len(buf):
            raise CodecError(f"corrupt bus message: {name} is truncated")
        views.append(mv[pos:pos + size])
        pos += size
    dec = _Decoder(views)
    try:
        kwargs = {k: dec.value(v) for k, v in fields.items()}
        return _build(cls, kwargs)
    except CodecError:
        raise
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CodecError(f"corrupt bus message for {name}: {type(exc).__name__}: {exc}") from None


def _build(cls: type, kwargs: dict) -> Any:
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(kwargs) - names
    if unknown:
        raise CodecError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))} (another cryptorsi version?)")
    return cls(**kwargs)


class _Decoder:
    def __init__(self, views: list[memoryview]):
        self.views = views

    def value(self, v: Any) -> Any:
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if not isinstance(v, dict):
            return v
        tag = next(iter(v))
        body = v[tag]
        if tag == "$d":
            return {k: self.value(x) for k, x in body.items()}
        if tag == "$t":
            return tuple(self.value(x) for x in body)
        if tag == "$f":
            return _F64.unpack(bytes.fromhex(body))[0]
        if tag == "$n":
            if body == "U":
                return np.str_(v["v"])
            return np.frombuffer(bytes.fromhex(v["h"]), dtype=np.dtype(body))[0]
        if tag == "$m":
            return {self.value(k): self.value(x) for k, x in body}
        if tag == "$fs":
            return frozenset(self.value(x) for x in body)
        if tag == "$set":
            return {self.value(x) for x in body}
        if tag == "$b":
            return bytes(self.views[body])
        if tag == "$nat":
            return pd.NaT
        if tag == "$na":
            return pd.NA
        if tag == "$ts":
            return _timestamp(body, v["u"], v["tz"])
        if tag == "$td":
            return pd.Timedelta(np.timedelta64(body, v["u"]))
        if tag == "$df":
            return self.frame(body)
        if tag == "$s":
            return self.series(body)
        if tag == "$i":
            return self.index(body)
        if tag == "$a":
            return self.ndarray(body)
        if tag == "$c":
            cls = _dataclass_named(body)
            if cls is None:
                raise CodecError(f"unknown dataclass {body!r} in bus message")
            return _build(cls, {k: self.value(x) for k, x in v["f"].items()})
        raise CodecError(f"unknown tag {tag!r} in bus message")

    def ndarray(self, d: dict) -> np.ndarray:
        kind = d["k"]
        if kind == "n":
            dtype = np.dtype(d["d"])
            shape = tuple(d["s"])
            view = self.views[d["b"]]
            if len(view) == 0:
                return np.empty(shape, dtype=dtype)
            return np.frombuffer(view, dtype=dtype).reshape(shape)
        if kind == "s":
            values = self.strings(d)
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out
        if kind == "o":
            out = np.empty(len(d["v"]), dtype=object)
            for i, x in enumerate(d["v"]):
                out[i] = self.value(x)
            return out
        raise CodecError(f"unknown array layout {kind!r} in bus message")

    def strings(self, d: dict) -> list[str | None]:
        if "j" in d:
            return list(d["j"])
        n = d["n"]
        offsets = np.frombuffer(self.views[d["o"]], dtype="<i8").tolist()
        data = bytes(self.views[d["b"]])
        values: list[str | None] = [data[offsets[i]:offsets[i + 1]].decode("utf-8", "surrogatepass") for i in range(n)]
        if "m" in d:
            for i in np.flatnonzero(np.frombuffer(self.views[d["m"]], dtype="|b1")):
                values[i] = None
        return values

    def array(self, d: dict) -> Any:
        kind = d["k"]
        if kind == "dtz":
            i8 = self.ndarray(d["v"])
            naive = pd.DatetimeIndex(i8.view(f"M8[{d['u']}]"))
            return naive.tz_localize("UTC").tz_convert(_tz(d["tz"])).array
        if kind == "str":
            strings = self.strings(d["v"])
            values = np.empty(len(strings), dtype=object)
            values[:] = strings
            na = pd.NA if d["na"] == "NA" else np.nan
            return pd.array(values, dtype=pd.StringDtype(d["st"], na_value=na))
        if kind == "cat":
            categories = self.index(d["c"])
            return pd.Categorical.from_codes(self.ndarray(d["v"]), dtype=pd.CategoricalDtype(categories, d["o"]))
        if kind == "mask":
            dtype = pd.api.types.pandas_dtype(d["d"])
            return dtype.construct_array_type()(self.ndarray(d["v"]), self.ndarray(d["m"]).astype(bool, copy=False))
        return self.ndarray(d)

    def index(self, d: dict) -> pd.Index:
        kind = d["k"]
        if kind == "range":
            return pd.RangeIndex(d["a"], d["z"], d["p"], name=self.value(d["n"]))
        if kind == "multi":
            return pd.MultiIndex(levels=[self.index(level) for level in d["l"]],
                                 codes=[self.ndarray(c) for c in d["c"]],
                                 names=[self.value(n) for n in d["n"]], verify_integrity=False)
        values = self.array(d["v"])
        name = self.value(d["n"])
        freq = d.get("fq")
        if freq is not None:
            if values.dtype.kind == "m":
                return pd.TimedeltaIndex(values, freq=freq, name=name)
            return pd.DatetimeIndex(values, freq=freq, name=name)
        return pd.Index(values, dtype=values.dtype, name=name, copy=False)

    def series(self, d: dict) -> pd.Series:
        values = self.array(d["v"])
        return pd.Series(values, index=self.index(d["i"]), name=self.value(d["n"]), dtype=values.dtype, copy=False)

    def frame(self, d: dict) -> pd.DataFrame:
        index = self.index(d["i"])
        columns = self.index(d["c"])
        arrays = [self.array(c) for c in d["v"]]
        if not arrays:
            df = pd.DataFrame(index=index)
        elif arrays[0].dtype.kind in "biufc" and all(
                isinstance(a, np.ndarray) and a.dtype == arrays[0].dtype for a in arrays):
            # one homogeneous numeric block (candle frames): a single 2-D array, no per-column Series
            df = pd.DataFrame(np.stack(arrays, axis=1), index=index, copy=False)
        else:  # Series with explicit dtypes: pandas would otherwise infer ``str`` for object columns of strings
            df = pd.DataFrame({i: pd.Series(a, index=index, dtype=a.dtype, copy=False) for i, a in enumerate(arrays)},
                              copy=False)
        df.columns = columns
        return df


def _tz(desc: Any) -> Any:
    if desc is None:
        return None
    if isinstance(desc, dict):
        return _dt.timezone(_dt.timedelta(seconds=desc["o"]))
    return desc


def _timestamp(value: int, unit: str, tz: Any) -> pd.Timestamp:
    ts = pd.Timestamp(np.datetime64(value, unit))
    if tz is not None:
        ts = ts.tz_localize("UTC").tz_convert(_tz(tz))
    return ts
