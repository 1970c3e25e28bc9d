"""Streaming disk-image format inspection: what the uploaded bytes are, their virtual size, and
whether they are safe to hand to qemu.

Glance runs oslo.utils' format inspector over every upload of a `container_format=bare` image
(the caller decides: other containers hold something that is not a bare disk image and are not
inspected). This module does the same job in one pass over the stream, with bounded memory:

* the first `HEAD_SIZE` bytes are kept (every header this module reads lies in them, except a
  VHDX metadata region, which is captured on its own once the head has shown where it is);
* a rolling tail of the last `TAIL_SIZE` bytes is kept (fixed VHD footer: last 512 bytes;
  streamOptimized VMDK footer: last 1536 bytes);
* once the head is full, `feed` only counts bytes and refreshes the tail: no copy of the chunk.

Detection runs at `finish`: every format is tried, and the result names the one that matched
("raw" when none did). `check` then applies Glance's rules (`glance/location.py`, `set_data`):

* several formats matched -> rejected, except ISO+GPT (a hybrid ISO: iso) and fixed VHD+GPT (a
  partitioned disk in a VHD: vhd);
* detected != disk_format -> rejected ("Image disk_format qcow2 does not match stream data raw"),
  except `raw` claims (accepted with a warning; virtual_size is then the byte size) and formats
  the inspector does not know (ami, aki, ari, ...) whose data looks raw (virtual_size unknown);
* the detected format's safety checks fail -> rejected, whatever the claim.

Safety checks: qcow2 backing file, qcow2 `data-file`, unknown qcow2 incompatible features or
version; QED always; VMDK create-type other than monolithicSparse/streamOptimized, missing
descriptor or extents, extents naming paths (`/`), descriptor-only VMDKs (all their extents are
other files), bad streamOptimized footer; MBR/GPT partition-table violations; LUKS other than v1.
Structures that cannot be parsed where their magic says they are (truncated or corrupt headers)
are unsafe too: qemu would read them differently, or not at all.
"""

from __future__ import annotations

import logging
import struct
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from app.errors import GlintError

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB

# The start of the stream that is kept. Covers every fixed-offset header and the largest embedded
# VMDK descriptor (1 MiB - 1 at sector 1); only the VHDX metadata region may lie further.
HEAD_SIZE = 2 * MiB
# The end of the stream that is kept: a streamOptimized VMDK's footer marker, footer and
# end-of-stream marker (3 x 512); a fixed VHD's footer is the last 512 bytes of it.
TAIL_SIZE = 1536
# The most captured from a region beyond the head (the VHDX metadata table and its items).
REGION_MAX = 1 * MiB

# Formats the inspector can recognise (Glance: oslo's ALL_FORMATS). A disk_format outside this
# set (ami, ari, aki, ...) cannot be checked: its data is accepted when it looks raw.
INSPECTABLE_FORMATS = frozenset(
    {"raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "qed", "iso", "gpt", "luks"}
)
# Sets of formats that legitimately match together, and the one that describes the data.
_COMPATIBLE_MATCHES = {
    frozenset({"iso", "gpt"}): "iso",  # bootable-as-disk ISO with a GPT/MBR in its system area
    frozenset({"vhd", "gpt"}): "vhd",  # fixed VHD whose disk starts with a partition table
}

# Glance's messages.
MISMATCH = "Image disk_format {declared} does not match stream data {detected}"
MULTIPLE = "Multiple formats detected: {formats}"
FAILED_SAFETY = "Image failed safety checks"


class UnsafeImage(GlintError):
    """The data is not what its disk_format says, or is unsafe: 415, as in Glance (the API
    layer renders it in webob's media-type template)."""

    status_code = 415

    def __init__(self, reason: str, problems: tuple[str, ...] = ()):
        super().__init__(reason)
        self.reason = reason
        self.problems = problems


@dataclass(frozen=True)
class InspectionResult:
    # raw, qcow2, vmdk, vhd, vhdx, vdi, iso, gpt, luks, qed; "raw" when nothing matched
    detected_format: str
    # What Glance records as virtual_size for this data under the declared disk_format: the
    # format's own size (raw: the byte size); the byte size for a `raw` claim on other data;
    # None when unknown, not inspectable, or zero (Glance leaves 0 unset).
    virtual_size: int | None
    # Why the data is unsafe; empty when safe. Applies whatever the declared format.
    safety_problems: tuple[str, ...]
    # Every format whose signature matched, sorted (more than one only for odd or hostile data).
    matched_formats: tuple[str, ...] = ()

    @property
    def ambiguous(self) -> bool:
        """Several formats matched, in a combination that is not a known-legitimate one."""
        return len(self.matched_formats) > 1 and (
            frozenset(self.matched_formats) not in _COMPATIBLE_MATCHES
        )


def check(result: InspectionResult, declared_format: str | None) -> None:
    """Glance's verdict on inspected data under the image's disk_format; raises `UnsafeImage`.

    `declared_format` None skips the format comparison (only ambiguity and safety count).
    """
    detected = result.detected_format
    if result.ambiguous:
        formats = ",".join(result.matched_formats)
        log.warning("Upload rejected: several formats detected (%s)", formats)
        raise UnsafeImage(MULTIPLE.format(formats=formats), result.safety_problems)
    if declared_format is not None and declared_format != detected:
        if detected == "raw" and declared_format not in INSPECTABLE_FORMATS:
            log.info("Image format %s is not an inspectable type", declared_format)
        elif declared_format == "raw":
            log.warning("Image claims 'raw' disk_format but is actually %r", detected)
        else:
            raise UnsafeImage(MISMATCH.format(declared=declared_format, detected=detected))
    if result.safety_problems:
        problems = "; ".join(result.safety_problems)
        log.warning("Upload rejected: %s image failed safety checks: %s", detected, problems)
        raise UnsafeImage(f"{FAILED_SAFETY}: {problems}", result.safety_problems)


class FormatInspector:
    """Feed it the stream chunk by chunk (any sizes), then `finish` for the verdict.

    Memory: at most `HEAD_SIZE` + `REGION_MAX` + a few times `TAIL_SIZE` bytes.
    """

    def __init__(self, declared_format: str | None):
        self.declared_format = declared_format
        self._head = bytearray()
        self._tail = bytearray()
        self._position = 0
        self._planned = False
        self._regions: list[_Region] = []

    @property
    def retained_bytes(self) -> int:
        """How many bytes of the stream the inspector holds (for audits and tests)."""
        return len(self._head) + len(self._tail) + sum(len(r.data) for r in self._regions)

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        size = len(chunk)
        if not size:
            return
        data = memoryview(chunk)  # slices below without copying the chunk
        if data.itemsize != 1:
            data = data.cast("B")
            size = len(data)
        start = self._position
        self._position = end = start + size
        if start < HEAD_SIZE:
            self._head += data[: HEAD_SIZE - start]
            if end >= HEAD_SIZE and not self._planned:
                self._plan()
        if self._regions:
            for region in self._regions:
                region.capture(data, start)
        if size >= TAIL_SIZE:
            self._tail = bytearray(data[size - TAIL_SIZE :])
        else:
            self._tail += data
            if len(self._tail) > 4 * TAIL_SIZE:
                del self._tail[:-TAIL_SIZE]

    def _plan(self) -> None:
        """The head is complete: ask for the regions beyond it that a format needs."""
        self._planned = True
        head = self._head
        if not head.startswith(b"vhdxfile"):
            return

        def read(offset: int, length: int) -> bytes | None:
            end = offset + length
            return bytes(head[offset:end]) if offset >= 0 and end <= len(head) else None

        try:
            location = _vhdx_metadata_location(read)
        except _Malformed:
            return
        offset, length = location
        length = min(length, REGION_MAX)
        if offset + length > len(head):
            region = _Region(offset, length)
            if offset < len(head):
                region.data += head[offset:]
            self._regions.append(region)

    def finish(self, total_size: int) -> InspectionResult:
        """The verdict on the whole stream; `total_size` is the number of bytes fed."""
        if total_size != self._position:
            log.warning("Inspector fed %d bytes, told %d", self._position, total_size)
        del self._tail[:-TAIL_SIZE]
        view = _View(self._position, self._head, self._tail, self._regions)
        matches: list[_Match] = []
        for name, detect in _DETECTORS:
            try:
                match = detect(view)
            except _Malformed as exc:
                match = _Match(name, None, (str(exc),))
            except Exception:  # a bug here must not let data through unchecked
                log.exception("Format inspector for %s failed", name)
                match = _Match(name, None, ("Image format inspection failed",))
            if match is not None:
                matches.append(match)
        return self._verdict(view.total, matches)

    def _verdict(self, total: int, matches: list[_Match]) -> InspectionResult:
        names = tuple(sorted(m.format for m in matches))
        if not matches:
            chosen = _Match("raw", total, ())
        elif len(matches) == 1:
            chosen = matches[0]
        else:
            preferred = _COMPATIBLE_MATCHES.get(frozenset(names))
            chosen = next((m for m in matches if m.format == preferred), matches[0])
        problems = chosen.problems
        if len(matches) > 1 and frozenset(names) not in _COMPATIBLE_MATCHES:
            problems = (MULTIPLE.format(formats=",".join(names)), *problems)
        declared = self.declared_format
        virtual_size = chosen.virtual_size
        if declared is not None and declared != chosen.format:
            if declared == "raw":
                virtual_size = total  # treated as raw bytes, as Glance does
            elif chosen.format == "raw":
                virtual_size = None  # a format the inspector cannot read (ami, ...)
        return InspectionResult(
            detected_format=chosen.format,
            virtual_size=virtual_size or None,
            safety_problems=problems,
            matched_formats=names if len(names) > 1 else (),
        )


class _Region:
    """A stretch of the stream beyond the head, captured as it goes by."""

    __slots__ = ("data", "length", "offset")

    def __init__(self, offset: int, length: int):
        self.offset = offset
        self.length = length
        self.data = bytearray()

    def capture(self, chunk: memoryview, chunk_start: int) -> None:
        wanted = self.offset + len(self.data)  # the next byte this region needs
        stop = self.offset + self.length
        chunk_end = chunk_start + len(chunk)
        if wanted >= stop or not chunk_start <= wanted < chunk_end:
            return
        self.data += chunk[wanted - chunk_start : min(stop, chunk_end) - chunk_start]


class _View:
    """Random access to the parts of the stream that were kept."""

    def __init__(self, total: int, head: bytearray, tail: bytearray, regions: list[_Region]):
        self.total = total
        self._head = head
        self._tail = tail
        self._regions = regions

    def read(self, offset: int, length: int) -> bytes | None:
        """Exactly `length` bytes at `offset`, or None if the stream has no such bytes or they
        were not kept."""
        end = offset + length
        if offset < 0 or length < 0 or end > self.total:
            return None
        if end <= len(self._head):
            return bytes(self._head[offset:end])
        tail_start = self.total - len(self._tail)
        if offset >= tail_start:
            return bytes(self._tail[offset - tail_start : end - tail_start])
        for region in self._regions:
            if region.offset <= offset and end <= region.offset + len(region.data):
                return bytes(region.data[offset - region.offset : end - region.offset])
        return None

    def has(self, offset: int, data: bytes) -> bool:
        return self.read(offset, len(data)) == data


@dataclass(frozen=True)
class _Match:
    format: str
    virtual_size: int | None
    problems: tuple[str, ...]


class _Malformed(Exception):
    """A structure that its magic announces but that cannot be read: unsafe."""


def _unpack(view: _View, fmt: str, offset: int, what: str) -> tuple[int, ...]:
    data = view.read(offset, struct.calcsize(fmt))
    if data is None:
        raise _Malformed(f"Truncated {what}")
    values: tuple[int, ...] = struct.unpack(fmt, data)
    return values


# qcow2: big-endian header. 0 magic, 4 version, 8 backing_file_offset, 24 size; v3 adds
# 72 incompatible_features (u64). docs/interop/qcow2.txt in qemu.
QCOW2_MAGIC = b"QFI\xfb"
QCOW2_DATA_FILE = 1 << 2
# Bits Glance's inspector knows: dirty, corrupt, external data file, compression type.
QCOW2_KNOWN_INCOMPATIBLE = 0b1111


def _qcow2(view: _View) -> _Match | None:
    if not view.has(0, QCOW2_MAGIC):
        return None
    (version, backing_file_offset, _, _, size) = _unpack(view, ">IQIIQ", 4, "qcow2 header")
    problems = []
    if backing_file_offset:
        problems.append("Image has a backing file")
    if version == 3:
        (incompatible,) = _unpack(view, ">Q", 72, "qcow2 header")
        if incompatible & QCOW2_DATA_FILE:
            problems.append("Image has data_file set")
        if incompatible & ~QCOW2_KNOWN_INCOMPATIBLE:
            problems.append("Unknown QCOW2 features found")
    elif version != 2:
        problems.append("Unsupported qcow2 version")
    return _Match("qcow2", size, tuple(problems))


# QED: nobody uses it; recognised to be refused.
def _qed(view: _View) -> _Match | None:
    if not view.has(0, b"QED\x00"):
        return None
    image_size = view.read(48, 8)
    size = struct.unpack("<Q", image_size)[0] if image_size else None
    return _Match("qed", size, ("This file format is not allowed",))


# VHD (qemu: vpc): a 512-byte big-endian footer, copied at the start of dynamic disks, only at
# the end of fixed ones. 0 "conectix", 28 creator application, 48 current size, 56 CHS geometry.
VHD_COOKIE = b"conectix"
VHD_MAX_GEOMETRY = 65535 * 16 * 255
# Creators whose images are sized by current_size rather than CHS geometry (qemu's vpc_open).
VHD_SIZED_BY_CURRENT_SIZE = (b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\x00")


def _vhd(view: _View) -> _Match | None:
    footer_at = 0
    if not view.has(0, VHD_COOKIE):
        footer_at = view.total - 512
        if footer_at < 0 or not view.has(footer_at, VHD_COOKIE):
            return None
    creator = view.read(footer_at + 28, 4)
    (current_size, cylinders, heads, sectors) = _unpack(view, ">QHBB", footer_at + 48, "VHD footer")
    total_sectors = cylinders * heads * sectors
    if creator in VHD_SIZED_BY_CURRENT_SIZE or total_sectors == VHD_MAX_GEOMETRY:
        total_sectors = current_size // 512
    return _Match("vhd", total_sectors * 512, ())


# VHDX: little-endian; "vhdxfile" at 0, region tables at 192 KiB and 256 KiB ("regi", count,
# then 32-byte entries: GUID, file offset u64, length u32), the metadata region ("metadata",
# count at 10, then 32-byte entries from 32: GUID, offset u32 from the region start, length u32)
# holding the Virtual Disk Size item (u64). MS-VHDX 2.2-2.6.
VHDX_REGION_TABLES = (192 * KiB, 256 * KiB)
VHDX_METADATA_REGION = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E").bytes_le
VHDX_VIRTUAL_DISK_SIZE = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8").bytes_le
VHDX_MAX_ENTRIES = 2047


def _vhdx_metadata_location(read: Callable[[int, int], bytes | None]) -> tuple[int, int]:
    """(offset, length) of the metadata region, from the first valid region table."""
    for table in VHDX_REGION_TABLES:
        header = read(table, 16)
        if header is None or header[:4] != b"regi":
            continue
        (count,) = struct.unpack("<I", header[8:12])
        if count > VHDX_MAX_ENTRIES:
            raise _Malformed("Invalid VHDX region table")
        entries = read(table + 16, 32 * count)
        if entries is None:
            raise _Malformed("Truncated VHDX region table")
        for index in range(count):
            entry = entries[32 * index : 32 * index + 32]
            if entry[:16] == VHDX_METADATA_REGION:
                offset, length = struct.unpack("<QI", entry[16:28])
                return offset, length
        raise _Malformed("VHDX metadata region not found")
    raise _Malformed("VHDX region table not found")


def _vhdx(view: _View) -> _Match | None:
    if not view.has(0, b"vhdxfile"):
        return None
    region, region_length = _vhdx_metadata_location(view.read)
    header = view.read(region, 32)
    if header is None or header[:8] != b"metadata":
        raise _Malformed("VHDX metadata table not found")
    (count,) = struct.unpack("<H", header[10:12])
    entries = view.read(region + 32, 32 * count) if count <= VHDX_MAX_ENTRIES else None
    if entries is None:
        raise _Malformed("Invalid VHDX metadata table")
    for index in range(count):
        entry = entries[32 * index : 32 * index + 32]
        if entry[:16] == VHDX_VIRTUAL_DISK_SIZE:
            item_offset, item_length = struct.unpack("<II", entry[16:24])
            if item_length < 8 or item_offset + 8 > region_length:
                raise _Malformed("Invalid VHDX virtual disk size")
            (size,) = _unpack(view, "<Q", region + item_offset, "VHDX virtual disk size")
            return _Match("vhdx", size, ())
    raise _Malformed("VHDX virtual disk size not found")


# VMDK sparse extent header, little-endian: 0 "KDMV", 4 version, 12 capacity (sectors),
# 28 descriptor offset (sectors), 36 descriptor size (sectors), 56 grain directory offset
# (GD_AT_END: a footer copy of the header near the end takes precedence). The descriptor is
# text; VMware "Virtual Disk Format 5.0".
VMDK_MAGIC = b"KDMV"
VMDK_HEADER = "<4sIIQQQQIQQ"  # through the grain directory offset
VMDK_GD_AT_END = 0xFFFFFFFFFFFFFFFF
VMDK_DESCRIPTOR_MAX = MiB - 1  # qemu's limit
VMDK_ALLOWED_TYPES = ("monolithicsparse", "streamoptimized")  # Glance's vmdk_allowed_types
VMDK_EXTENT_ACCESS = ("rw", "rdonly", "noaccess")
VMDK_MARKER_EOS = 0
VMDK_MARKER_FOOTER = 3


def _vmdk(view: _View) -> _Match | None:
    if not view.has(0, VMDK_MAGIC):
        return _vmdk_descriptor_file(view)
    header = _unpack(view, VMDK_HEADER, 0, "VMDK header")
    _, version, _, capacity, _, desc_sector, desc_sectors, _, _, gd_offset = header
    problems = []
    if version not in (1, 2, 3):
        problems.append(f"Unsupported VMDK format version {version}")
    if gd_offset == VMDK_GD_AT_END:
        footer_problems, footer = _vmdk_footer(view, header)
        problems += footer_problems
        if footer is not None:
            capacity = footer[3]
    create_type: str | None = None
    descriptor = None
    if desc_sector and desc_sectors:
        offset = desc_sector * 512
        length = min(desc_sectors * 512, VMDK_DESCRIPTOR_MAX, view.total - offset)
        descriptor = view.read(offset, length) if length > 0 else None
    if descriptor is None:
        problems.append("No descriptor found")
    else:
        create_type, descriptor_problems = _vmdk_descriptor(descriptor)
        problems += descriptor_problems
    virtual_size = capacity * 512 if create_type in VMDK_ALLOWED_TYPES else None
    return _Match("vmdk", virtual_size, tuple(problems))


def _vmdk_footer(view: _View, header: tuple[int, ...]) -> tuple[list[str], tuple[int, ...] | None]:
    """Checks the streamOptimized footer (footer marker, footer, end-of-stream marker)."""
    start = view.total - 1536
    if start < 512 or view.read(start, 1536) is None:
        return ["Footer is missing"], None
    footer = _unpack(view, VMDK_HEADER, start + 512, "VMDK footer")
    problems = []
    if footer[0] != header[0]:
        problems.append("Header and footer signature do not match")
    if footer[1] != header[1]:
        problems.append("Header and footer versions do not match")
    if footer[5:7] != header[5:7]:
        problems.append("Footer specifies a different descriptor than header")
    if footer[9] == VMDK_GD_AT_END:
        problems.append("Footer indicates another footer")
    pad = bytes(496)
    marker = view.read(start, 512) or b""
    if marker[8:16] != struct.pack("<II", 0, VMDK_MARKER_FOOTER) or marker[16:] != pad:
        problems.append("Footer marker is invalid")
    if view.read(start + 1024, 512) != struct.pack("<QII", 0, 0, VMDK_MARKER_EOS) + pad:
        problems.append("End-of-stream marker is invalid")
    return problems, footer


def _vmdk_descriptor(data: bytes) -> tuple[str | None, list[str]]:
    """(create type, problems) of a descriptor, read as cautiously as Glance does: every line
    must be a comment, a `key=value` header, a `ddb` entry or an extent without a path."""
    text_bytes = data.split(b"\x00", 1)[0]
    try:
        text = text_bytes.decode("ascii").lower()
    except UnicodeDecodeError:
        return None, ["No descriptor found"]
    create_type = None
    marker = 'createtype="'
    start = text.find(marker)
    if start >= 0:
        start += len(marker)
        end = text.find('"', start)
        if 0 <= end - start < 64:
            create_type = text[start:end]
    if create_type not in VMDK_ALLOWED_TYPES:
        return create_type, ["Unsupported subformat"]
    extents = []
    for raw_line in text.split("\n"):
        line = raw_line.strip()
        if not line or line.startswith(("#", "ddb")):
            continue
        if "=" in line and " " not in line.split("=")[0]:
            continue  # header field
        if line.split(" ")[0] in VMDK_EXTENT_ACCESS:
            extents.append(line)
        else:
            return create_type, ["Invalid VMDK descriptor data"]
    if any("/" in extent for extent in extents):
        return create_type, ["Invalid extent filenames found"]
    if not extents:
        return create_type, ["No extents found"]
    return create_type, []


def _vmdk_descriptor_file(view: _View) -> _Match | None:
    """A text-only VMDK: a descriptor whose extents are all other files (qemu opens them)."""
    start = view.read(0, min(512, view.total))
    text = start.split(b"\x00", 1)[0] if start else b""
    if not text or not _is_text(text):
        return None
    data = view.read(0, min(VMDK_DESCRIPTOR_MAX, view.total)) or text
    if b'createtype="' not in data.split(b"\x00", 1)[0].lower():
        return None
    _, problems = _vmdk_descriptor(data)
    problems.append("VMDK descriptor file refers to external extents")
    return _Match("vmdk", None, tuple(problems))


def _is_text(data: bytes) -> bool:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return False
    return all(char.isprintable() or char.isspace() for char in text)


# VDI: little-endian header; signature 0xbeda107f at 0x40, disk size u64 at 0x170. qemu vdi.c.
def _vdi(view: _View) -> _Match | None:
    if view.read(0x40, 4) != struct.pack("<I", 0xBEDA107F):
        return None
    (size,) = _unpack(view, "<Q", 0x170, "VDI header")
    return _Match("vdi", size, ())


# ISO 9660 / UDF: volume descriptors in 2048-byte sectors from sector 16, identified at byte 1
# ("CD001"; UDF "NSR02"/"NSR03"). The primary volume descriptor (type 1) gives the volume size:
# blocks (LE u32 at 80) x block size (LE u16 at 128).
ISO_IDENTIFIERS = (b"CD001", b"NSR02", b"NSR03")
ISO_DESCRIPTORS = (16 * 2048, 17 * 2048, 18 * 2048)


def _iso(view: _View) -> _Match | None:
    found = False
    virtual_size = None
    for offset in ISO_DESCRIPTORS:
        descriptor = view.read(offset, 2048)
        if descriptor is None or descriptor[1:6] not in ISO_IDENTIFIERS:
            continue
        found = True
        if virtual_size is None and descriptor[0] == 1 and descriptor[1:6] == b"CD001":
            (blocks,) = struct.unpack("<I", descriptor[80:84])
            (block_size,) = struct.unpack("<H", descriptor[128:130])
            virtual_size = blocks * block_size
    return _Match("iso", virtual_size, ()) if found else None


# MBR (and GPT's protective MBR): 0x55AA at 510, four 16-byte partition entries from 446.
MBR_PARTITIONS = 446
MBR_GPT_PROTECTIVE = 0xEE
FAT_MEDIA_FIXED_DISK = 0xF8


def _gpt(view: _View) -> _Match | None:
    sector = view.read(0, 512)
    if sector is None or sector[510:512] != b"\x55\xaa":
        return None
    if sector[0x10] == 2 and sector[0x15] == FAT_MEDIA_FIXED_DISK:
        return None  # a FAT boot sector (two FATs, fixed disk), not a partition table
    return _Match("gpt", view.total, tuple(_mbr_problems(sector)))


def _mbr_problems(sector: bytes) -> Iterable[str]:
    used = []
    protective = False
    for index in range(4):
        start = MBR_PARTITIONS + 16 * index
        boot, chs_start, kind, _, first_lba, _ = struct.unpack(
            "<B3sB3sII", sector[start : start + 16]
        )
        if boot not in (0x00, 0x80):
            return [f"MBR PTE {index} has invalid boot flag"]
        if kind:
            used.append(index)
        if kind == MBR_GPT_PROTECTIVE:
            protective = True
            if chs_start != b"\x00\x02\x00":
                return ["GPT MBR has invalid start CHS"]
            if first_lba != 1:
                return ["GPT MBR has invalid start LBA"]
    if protective and used != [0]:
        return ["GPT MBR defines invalid extra partitions"]
    if not used:
        return ["GPT MBR has no partitions defined"]
    return []


# LUKS v1: big-endian; "LUKS\xba\xbe", version u16 at 6, payload offset (sectors) u32 at 104.
def _luks(view: _View) -> _Match | None:
    if not view.has(0, b"LUKS\xba\xbe"):
        return None
    (version,) = _unpack(view, ">H", 6, "LUKS header")
    (payload,) = _unpack(view, ">I", 104, "LUKS header")
    problems = () if version == 1 else (f"LUKS version {version} is not supported",)
    size = view.total - payload * 512
    return _Match("luks", size if size > 0 else None, problems)


_DETECTORS: tuple[tuple[str, Callable[[_View], _Match | None]], ...] = (
    ("qcow2", _qcow2),
    ("qed", _qed),
    ("vhd", _vhd),
    ("vhdx", _vhdx),
    ("vmdk", _vmdk),
    ("vdi", _vdi),
    ("iso", _iso),
    ("gpt", _gpt),
    ("luks", _luks),
)
