"""Bounds on what an answer declares, checked as its headers arrive.

msgpack's Unpacker checks a str, bin or ext length only once that many bytes
are in: a server declaring a 4 GiB bin would have the client wait for (and
buffer up to the frame limit of) bytes that never come.  _Scan walks the
headers of the one answer still incomplete after a read (whole answers, the
common case, never come here) and refuses a declared length, element count
or nesting the client would not accept, at once, as libdynqclient's framer
does.  It sees one answer's bytes only: the caller starts a new _Scan where
the Unpacker says that answer starts.
"""
from ._errors import EDEPTH, ELIMIT, EPROTO, ETOOBIG

# Same limits as libdynqclient's response_limits (client/conn.c).
MAX_DEPTH = 32
MAX_ELEMS = 1 << 22

# header byte -> (header length, kind) for the variable-length forms:
# kind "n" skips a payload whose length is the big-endian size after the
# type byte; "a"/"m" open an array/map of that many elements; "x" is an
# ext (its payload follows the length and a type byte).
_VAR = {0xc4: (2, "n"), 0xc5: (3, "n"), 0xc6: (5, "n"),
        0xc7: (3, "x"), 0xc8: (4, "x"), 0xc9: (6, "x"),
        0xd9: (2, "n"), 0xda: (3, "n"), 0xdb: (5, "n"),
        0xdc: (3, "a"), 0xdd: (5, "a"), 0xde: (3, "m"), 0xdf: (5, "m")}
# fixed-size items: header byte -> total bytes
_FIXED = {0xca: 5, 0xcb: 9, 0xcc: 2, 0xcd: 3, 0xce: 5, 0xcf: 9,
          0xd0: 2, 0xd1: 3, 0xd2: 5, 0xd3: 9, 0xd4: 3, 0xd5: 4, 0xd6: 6, 0xd7: 10, 0xd8: 18}


class _Scan:
    __slots__ = ("max_frame", "skip", "stack", "head", "size", "elems")

    def __init__(self, max_frame):
        self.max_frame = max_frame
        self.skip = 0      # payload bytes of the current str/bin/ext still to come
        self.stack = []    # items still to come in each open array/map
        self.head = b""    # the start of a header split across reads
        self.size = 0      # bytes of this answer seen
        self.elems = 0     # array elements + map entries declared

    def feed(self, mv):
        """Check the next bytes of the answer (a memoryview or bytes)."""
        i, n = 0, len(mv)
        while i < n:
            if self.skip:
                take = min(self.skip, n - i)
                self.skip -= take
                i += take
                continue
            if self.head:
                # finish a split header: at most 8 more bytes are needed
                had = len(self.head)
                buf = self.head + bytes(mv[i:i + 9])
                used = self._header(buf, 0)
                if used is None:
                    self.head = buf
                    return
                i += used - had
                self.head = b""
                continue
            used = self._header(mv, i)
            if used is None:
                self.head = bytes(mv[i:])
                return
            i = used

    def _header(self, b, i):
        """Take the item header at b[i]: the index past it, or None when
        the header is not wholly in b."""
        t = b[i]
        if t <= 0x7f or t >= 0xe0 or t in (0xc0, 0xc2, 0xc3):
            self.size += 1
            self._item()
        elif t <= 0x8f:
            self.size += 1
            self._open(t & 0x0f, 2)
        elif t <= 0x9f:
            self.size += 1
            self._open(t & 0x0f, 1)
        elif t <= 0xbf:
            self.size += 1
            self._payload(t & 0x1f, "a str")
        elif t in _FIXED:
            # numbers and fixext: the type byte, then bytes skipped like a payload
            self.size += 1
            self._payload(_FIXED[t] - 1, "a number")
        elif t in _VAR:
            hl, kind = _VAR[t]
            if len(b) - i < hl:
                return None
            count = int.from_bytes(b[i + 1:i + hl - (kind == "x")], "big")
            self.size += hl
            if kind == "a":
                self._open(count, 1)
            elif kind == "m":
                self._open(count, 2)
            else:
                self._payload(count, "a bin" if t <= 0xc6 else "a str" if t >= 0xd9 else "an ext")
            return i + hl
        else:  # 0xc1
            raise EPROTO("undecodable response from dynqd: not msgpack (byte 0xc1)")
        return i + 1

    def _payload(self, length, kind):
        if self.size + length > self.max_frame:
            raise ETOOBIG(f"undecodable response from dynqd: it declares {kind} of {length} "
                          f"bytes, more than the client accepts in one answer "
                          f"({self.max_frame} bytes)")
        self.size += length
        self.skip = length
        self._item()

    def _open(self, count, per):
        if count == 0:
            self._item()
            return
        if len(self.stack) + 1 > MAX_DEPTH:
            raise EDEPTH(f"undecodable response from dynqd: it nests arrays or maps deeper "
                         f"than {MAX_DEPTH} levels")
        self.elems += count
        # every element takes a byte at least: a count the answer's room cannot hold is a lie
        if self.elems > MAX_ELEMS or self.size + count * per > self.max_frame:
            raise ELIMIT(f"undecodable response from dynqd: it declares {count} "
                         f"{'map entries' if per == 2 else 'array elements'}, more than the "
                         f"client accepts in one answer ({MAX_ELEMS})")
        self.stack.append(count * per)

    def _item(self):
        st = self.stack
        while st:
            st[-1] -= 1
            if st[-1]:
                return
            st.pop()
