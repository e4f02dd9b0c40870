"""Layer extraction on real tar files and a real file system: what an image may contain,
what it may not, and proof that a refused member wrote nothing outside the root."""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
from pathlib import Path

import pytest

from gigmcp.packages.oci.errors import ExtractError
from gigmcp.packages.oci.extract import ExtractLimits, Layer, extract_layers
from tests.support.oci_images import (
    LAYER_GZIP,
    LAYER_TAR,
    Entry,
    device,
    directory,
    fifo,
    file,
    hardlink,
    huge_header_tar,
    sha,
    symlink,
    tar,
)


def apply(
    tmp_path: Path,
    *layers: bytes,
    limits: ExtractLimits | None = None,
    media: str = LAYER_GZIP,
    diff_ids: list[str | None] | None = None,
) -> Path:
    tmp_path.mkdir(exist_ok=True)
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    objs = []
    for i, data in enumerate(layers):
        blob = tmp_path / f"layer{i}"
        blob.write_bytes(data)
        objs.append(Layer(blob, media, sha(data), diff_ids[i] if diff_ids else None))
    extract_layers(objs, root, limits)
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the root, standing for the host: nothing may ever land here."""
    path = tmp_path / "host"
    path.mkdir()
    (path / "passwd").write_text("root:x:0:0\n")
    return path


def untouched(outside: Path) -> bool:
    return (
        sorted(os.listdir(outside)) == ["passwd"]
        and (outside / "passwd").read_text() == "root:x:0:0\n"
    )


# -- what an image may contain --------------------------------------------------------


def test_files_dirs_links_land_with_safe_modes_and_our_ownership(tmp_path: Path) -> None:
    suid = file("usr/bin/tool", b"\x7fELF...", 0o4755)
    suid.info.uid, suid.info.gid, suid.info.uname = 1234, 1234, "someone"
    root = apply(
        tmp_path,
        tar([
            directory("usr", 0o700),
            directory("usr/bin", 0o777),
            suid,
            file("usr/bin/sgid", b"x", 0o2711),
            file("etc/secret", b"s", 0o600),
            file("etc/world", b"w", 0o666),
            symlink("bin", "usr/bin"),
            symlink("etc/abs", "/etc/passwd"),
            hardlink("usr/bin/tool2", "usr/bin/tool"),
        ]),
    )  # fmt: skip

    def mode(p: str) -> int:
        return stat.S_IMODE(os.lstat(root / p).st_mode)

    assert mode("usr") == 0o755 and mode("usr/bin") == 0o755
    assert mode("usr/bin/tool") == 0o755  # setuid dropped, execute kept
    assert mode("usr/bin/sgid") == 0o755
    assert mode("etc/secret") == 0o644 and mode("etc/world") == 0o644
    assert os.lstat(root / "usr/bin/tool").st_uid == os.getuid()
    assert os.readlink(root / "bin") == "usr/bin"
    assert os.readlink(root / "etc/abs") == "/etc/passwd"  # any target: resolved in the jail
    assert os.lstat(root / "usr/bin/tool").st_ino == os.lstat(root / "usr/bin/tool2").st_ino
    assert (root / "usr/bin/tool").read_bytes() == b"\x7fELF..."
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o755


def test_plain_tar_layers_and_dot_slash_names(tmp_path: Path) -> None:
    root = apply(
        tmp_path, tar([directory("./"), file("./a/b.txt", "hi")], compress=False), media=LAYER_TAR
    )
    assert (root / "a/b.txt").read_text() == "hi"


def test_later_layers_replace_entries_of_any_kind(tmp_path: Path) -> None:
    root = apply(
        tmp_path,
        tar([file("x", "file"), directory("y"), file("y/inner", "i"), symlink("z", "/somewhere")]),
        tar([directory("x"), file("x/now-a-dir", "d"), file("y", "now a file"), directory("z"),
             file("z/real", "r")]),
    )  # fmt: skip
    assert (root / "x/now-a-dir").read_text() == "d"
    assert (root / "y").read_text() == "now a file"
    assert not (root / "z").is_symlink() and (root / "z/real").read_text() == "r"


def test_a_rewritten_file_never_writes_into_a_shared_inode(tmp_path: Path) -> None:
    root = apply(
        tmp_path,
        tar([file("a", "original"), hardlink("b", "a")]),
        tar([file("b", "changed")]),
    )
    assert (root / "a").read_text() == "original"
    assert (root / "b").read_text() == "changed"


def test_whiteouts_remove_lower_entries_only(tmp_path: Path) -> None:
    root = apply(
        tmp_path,
        tar([file("a/keep", "k"), file("a/gone", "g"), directory("a/gonedir"), file("a/gonedir/f", "f"),
             file("b/old", "o"), file("b/sub/old2", "o2"), file("b/sub/also-old", "o3")]),
        tar([file("a/.wh.gone"), file("a/.wh.gonedir"), file("a/new", "n"), file("a/.wh.new"),
             file("b/sub/new2", "n2"), file("b/.wh..wh..opq"), file("b/new", "n"),
             file("a/.wh.never-existed"), file("c/.wh.x")]),
    )  # fmt: skip
    assert sorted(os.listdir(root / "a")) == ["keep", "new"]  # its own layer's 'new' survives
    assert sorted(os.listdir(root / "b")) == ["new", "sub"]  # opaque: lower 'old' hidden
    assert sorted(os.listdir(root / "b/sub")) == ["new2"]  # and inside this layer's dirs too
    assert not (root / "c").exists() or os.listdir(root / "c") == []
    assert not any(
        name.startswith(".wh.") for _d, dirs, files in os.walk(root) for name in dirs + files
    )


def test_whiteout_then_file_in_one_layer_gives_the_new_file(tmp_path: Path) -> None:
    root = apply(tmp_path, tar([file("x", "old")]), tar([file(".wh.x"), file("x", "new")]))
    assert (root / "x").read_text() == "new"


def test_diff_ids_are_checked(tmp_path: Path) -> None:
    layer = tar([file("a", "b")])
    good = sha(gzip.decompress(layer))
    assert (apply(tmp_path / "ok", layer, diff_ids=[good]) / "a").read_text() == "b"
    with pytest.raises(ExtractError, match="does not match the image config's diff_id"):
        apply(tmp_path / "bad", layer, diff_ids=[sha(b"something else")])


# -- what it may not -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([file("../escape", "x")], "contains '..'"),
        ([file("a/../../escape", "x")], "contains '..'"),
        ([file("/etc/cron.d/evil", "x")], "is an absolute path"),
        ([directory("/abs")], "is an absolute path"),
        ([symlink("../link", "/")], "contains '..'"),
        ([device("dev/null")], "device node"),
        ([device("dev/sda", tarfile.BLKTYPE)], "device node"),
        ([fifo("run/pipe")], "fifo"),
        ([hardlink("h", "../../host/passwd")], "hard link out of the image"),
        ([hardlink("h", "/etc/passwd")], "hard link to the absolute path"),
        ([hardlink("h", "missing")], "not a file extracted before it"),
        ([directory("d"), hardlink("h", "d")], "not a file extracted before it"),
        ([symlink("s", "/etc/passwd"), hardlink("h", "s")], "not a file extracted before it"),
        ([hardlink("h", "h")], "a hard link to itself"),
        ([file("a/.wh.b/c", "x")], "whiteout name used as a directory"),
        ([file("x", "y"), file("x/y", "z")], "is not a directory"),
    ],
)
def test_escapes_and_special_files_are_refused(
    tmp_path: Path, outside: Path, entries: list[Entry], message: str
) -> None:
    with pytest.raises(ExtractError, match=message):
        apply(tmp_path, tar(entries))
    assert untouched(outside)
    assert not (tmp_path / "escape").exists()


def test_a_symlink_then_a_write_through_it_is_refused(tmp_path: Path, outside: Path) -> None:
    with pytest.raises(ExtractError, match="written through the symlink 'etc'"):
        apply(tmp_path, tar([symlink("etc", str(outside)), file("etc/passwd", "pwned")]))
    assert untouched(outside)


def test_a_relative_symlink_out_then_a_write_is_refused(tmp_path: Path, outside: Path) -> None:
    with pytest.raises(ExtractError, match="written through the symlink 'up'"):
        apply(tmp_path, tar([symlink("up", "../host"), file("up/new", "x")]))
    assert untouched(outside)


def test_a_symlink_from_a_lower_layer_is_not_a_path_for_a_later_one(
    tmp_path: Path, outside: Path
) -> None:
    with pytest.raises(ExtractError, match="written through the symlink 'usr/lib'"):
        apply(
            tmp_path,
            tar([directory("usr"), symlink("usr/lib", str(outside))]),
            tar([file("usr/lib/libc.so.6", "evil")]),
        )
    assert untouched(outside)


def test_even_an_inside_symlink_is_never_written_through(tmp_path: Path) -> None:
    # Where it points is decided inside the jail; while building, only real folders count.
    with pytest.raises(ExtractError, match="written through the symlink 'lib'"):
        apply(tmp_path, tar([directory("usr/lib"), symlink("lib", "usr/lib"), file("lib/x", "y")]))


def test_a_hard_link_through_a_symlinked_folder_is_refused(tmp_path: Path, outside: Path) -> None:
    with pytest.raises(ExtractError, match="through the symlink 'h'"):
        apply(tmp_path, tar([symlink("h", str(outside)), hardlink("stolen", "h/passwd")]))
    assert untouched(outside)
    assert not (tmp_path / "root/stolen").exists()


def test_a_whiteout_through_a_symlink_is_refused(tmp_path: Path, outside: Path) -> None:
    with pytest.raises(ExtractError, match="through the symlink 'h'"):
        apply(tmp_path, tar([symlink("h", str(outside))]), tar([file("h/.wh.passwd")]))
    assert untouched(outside)


def test_an_opaque_marker_through_a_symlink_is_refused(tmp_path: Path, outside: Path) -> None:
    with pytest.raises(ExtractError, match="through the symlink 'h'"):
        apply(tmp_path, tar([symlink("h", str(outside))]), tar([file("h/.wh..wh..opq")]))
    assert untouched(outside)


def test_a_file_claiming_gigabytes_is_refused_from_its_header(tmp_path: Path) -> None:
    # The layer carries 4 KiB after the header: the size in the message comes from the
    # header alone, read before any of the file.
    with pytest.raises(ExtractError, match=r"is 8589934592 bytes, over the \d+-byte file cap"):
        apply(tmp_path, huge_header_tar("big", 8 * 1024**3))
    assert os.listdir(tmp_path / "root") == []


def test_caps_on_file_size_total_size_and_member_count(tmp_path: Path) -> None:
    small = ExtractLimits(max_file_bytes=1000, max_total_bytes=1500, max_members=5)
    with pytest.raises(ExtractError, match="over the 1000-byte file cap"):
        apply(tmp_path / "a", tar([file("f", b"x" * 1001)]), limits=small)
    with pytest.raises(ExtractError, match="larger than the 1500-byte cap"):
        apply(
            tmp_path / "b",
            tar([file("f1", b"x" * 800)]),
            tar([file("f2", b"y" * 800)]),
            limits=small,
        )
    with pytest.raises(ExtractError, match="more than 5 entries"):
        apply(tmp_path / "c", tar([file(f"f{i}", "") for i in range(6)]), limits=small)


def test_an_oversized_pax_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    info = tarfile.TarInfo("x")
    info.pax_headers = {"comment": "A" * (2 * 1024 * 1024)}
    layer = gzip.compress(info.tobuf(format=tarfile.PAX_FORMAT) + b"\0" * 1024)
    with pytest.raises(ExtractError, match="tar header record of .* bytes is over"):
        apply(tmp_path, layer)


def test_a_compression_bomb_stops_at_the_stream_cap(tmp_path: Path) -> None:
    # A tiny archive followed by 64 MiB of zeros (64 KiB once compressed).
    body = tar([file("a", "b")], compress=False) + b"\0" * (64 * 1024 * 1024)
    limits = ExtractLimits(max_total_bytes=1024 * 1024, max_members=10)
    with pytest.raises(ExtractError, match="decompresses to more than the image size cap"):
        apply(tmp_path, gzip.compress(body, compresslevel=1), limits=limits)


@pytest.mark.parametrize(
    ("data", "media", "message"),
    [
        (b"\x28\xb5\x2f\xfd" + b"\0" * 100, LAYER_TAR, "zstd-compressed, which is not supported"),
        (b"anything", "application/vnd.oci.image.layer.v1.tar+zstd", "zstd-compressed"),
        (
            b"anything",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "non-distributable",
        ),
        (b"anything", "application/x-evil", "unsupported media type"),
        (b"not gzip at all", LAYER_GZIP, "declared gzip but is not gzip"),
        (b"garbage" * 100, LAYER_TAR, "not a valid tar archive"),
        (tar([file("a", "b" * 5000)])[:-40], LAYER_GZIP, "not a valid compressed stream"),
    ],
)
def test_malformed_and_unsupported_layers(
    tmp_path: Path, data: bytes, media: str, message: str
) -> None:
    with pytest.raises(ExtractError, match=message):
        apply(tmp_path, data, media=media)
