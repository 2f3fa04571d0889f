"""`bench download mtat` against a local HTTP server serving small fake parts (no internet here)."""

import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest

from bench.cli import main
from bench.core.errors import UserError
from bench.data.download import EXTRACTED_MARKER, MTAT_PARTS, download_mtat, fetch

FILES = {"0/first.mp3": b"ID3" + bytes(range(256)) * 40, "c/second.mp3": b"ID3" + b"x" * 5000}
ANNOTATIONS = b'"clip_id"\t"guitar"\t"mp3_path"\n"2"\t"1"\t"0/first.mp3"\n'


def fake_archive():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in FILES.items():
            zf.writestr(name, data)
    data = buffer.getvalue()
    cut = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    return {name: data[cut[i]:cut[i + 1]] for i, name in enumerate(MTAT_PARTS)}


class Server:
    """Serves `files` on 127.0.0.1, honouring `Range: bytes=N-` unless told not to, as HTTP servers do:
    206 with `Content-Range: bytes N-END/SIZE`, or 416 with `Content-Range: bytes */SIZE` from the end on.
    `cut` names files whose body is sent chunked (no Content-Length) and dropped after 100 bytes, once;
    `wrong_range` files answer a range request with 206 and the whole file (Content-Range from 0)."""

    def __init__(self, files, honour_range=True):
        self.files = files
        self.requests = []
        self.paths = []
        self.cut, self.wrong_range = set(), set()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append((name, self.headers.get("Range")))
                outer.paths.append(self.path)
                if name not in outer.files:
                    self.send_error(404)
                    return
                data = outer.files[name]
                if name in outer.cut:
                    outer.cut.discard(name)
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data[:100]))
                    self.wfile.flush()
                    self.close_connection = True
                    return
                start = 0
                if honour_range and self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    if name in outer.wrong_range:
                        start = 0
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/datasets/magnatagatune/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server({**fake_archive(), "annotations_final.csv": ANNOTATIONS})
    yield s
    s.close()


def test_download_join_and_unpack(tmp_path, server, capsys):
    status = main(["download", "mtat", "--to", str(tmp_path / "mtat"), "--base-url", server.url])
    assert status == 0
    root = tmp_path / "mtat"
    for name, data in FILES.items():
        assert (root / name).read_bytes() == data
    assert (root / "annotations_final.csv").read_bytes() == ANNOTATIONS
    assert (root / EXTRACTED_MARKER).exists()
    assert not any((root / p).exists() for p in MTAT_PARTS)  # archives removed after unpacking
    server.requests.clear()
    assert main(["download", "mtat", "--to", str(root), "--base-url", server.url]) == 0
    assert server.requests == []  # a second run fetches nothing


def test_resume_uses_range(tmp_path, server):
    parts = fake_archive()
    root = tmp_path / "mtat"
    root.mkdir()
    (root / "mp3.zip.002.part").write_bytes(parts["mp3.zip.002"][:100])
    download_mtat(root, base_url=server.url)
    assert ("mp3.zip.002", "bytes=100-") in server.requests
    assert (root / "c/second.mp3").read_bytes() == FILES["c/second.mp3"]


def test_server_ignoring_range_restarts_the_file(tmp_path):
    parts = fake_archive()
    s = Server(parts, honour_range=False)
    try:
        dest = tmp_path / "mp3.zip.001"
        (tmp_path / "mp3.zip.001.part").write_bytes(b"garbage that must not be kept")
        fetch(s.url + "mp3.zip.001", dest)
        assert dest.read_bytes() == parts["mp3.zip.001"]
    finally:
        s.close()


def test_unreachable_or_missing_file_is_a_user_error(tmp_path, server, capsys):
    with pytest.raises(UserError, match="HTTP 404"):
        fetch(server.url + "nope", tmp_path / "nope")
    status = main(["download", "mtat", "--to", str(tmp_path / "x"), "--base-url", "http://127.0.0.1:9/none/"])
    assert status == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_body_cut_off_without_a_length_is_one_line_and_the_rerun_completes(tmp_path, server, capsys):
    server.cut.add("mp3.zip.002")
    root = tmp_path / "mtat"
    assert main(["download", "mtat", "--to", str(root), "--base-url", server.url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "download interrupted: " in err and "mp3.zip.002: IncompleteRead" in err
    assert main(["download", "mtat", "--to", str(root), "--base-url", server.url]) == 0
    assert all((root / name).read_bytes() == data for name, data in FILES.items())


def test_a_part_is_resumed_only_from_where_it_ends(tmp_path, server):
    parts = fake_archive()
    whole = parts["mp3.zip.001"]
    # a part longer than the file (a file replaced on the server): the 416 says the size; start again
    (tmp_path / "a.part").write_bytes(b"x" * (len(whole) + 50))
    server.files["a"] = whole
    assert fetch(server.url + "a", tmp_path / "a").read_bytes() == whole
    # a server that answers a range request with the file from its start: not appended to the part
    (tmp_path / "b.part").write_bytes(whole[:100])
    server.files["b"] = whole
    server.wrong_range.add("b")
    assert fetch(server.url + "b", tmp_path / "b").read_bytes() == whole
    # a part exactly as long as the file: the 416 completes it without fetching again
    (tmp_path / "c.part").write_bytes(whole)
    server.files["c"] = b"y" * len(whole)
    assert fetch(server.url + "c", tmp_path / "c").read_bytes() == whole
    assert [r for r in server.requests if r[0] == "c"] == [("c", f"bytes={len(whole)}-")]


def test_a_corrupt_archive_is_one_line_and_names_what_to_delete(tmp_path, server, capsys):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("0/first.mp3", bytes(range(256)) * 400)
    data = bytearray(buffer.getvalue())
    data[200:264] = bytes(64)  # inside the deflated member
    cut = len(data) // 3
    server.files.update({"mp3.zip.001": bytes(data[:cut]), "mp3.zip.002": bytes(data[cut:2 * cut]),
                         "mp3.zip.003": bytes(data[2 * cut:])})
    root = tmp_path / "mtat"
    assert main(["download", "mtat", "--to", str(root), "--base-url", server.url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"mp3.zip.001 + mp3.zip.002 + mp3.zip.003 in {root}: not a valid zip (" in err
    assert "delete the parts and download again" in err and not (root / EXTRACTED_MARKER).exists()
    # the member whose CRC failed had been left where the dataset is read, truncated (262,144 of its bytes)
    assert not (root / "0" / "first.mp3").exists() and not list(root.rglob(".unpacking-*"))


def test_a_disk_that_fills_while_unpacking_leaves_no_truncated_file_where_the_dataset_is_read(tmp_path, server,
                                                                                             monkeypatch):
    from bench.data import download

    copy = download.shutil.copyfileobj

    def fills_at_the_second(source, out, length=0):
        if Path(out.name).parent.name == "c":  # c/second.mp3's
            out.write(source.read(100))
            raise OSError(28, "No space left on device")
        copy(source, out, length)

    monkeypatch.setattr(download.shutil, "copyfileobj", fills_at_the_second)
    root = tmp_path / "mtat"
    with pytest.raises(UserError, match="No space left on device"):
        download_mtat(root, base_url=server.url)
    assert (root / "0" / "first.mp3").read_bytes() == FILES["0/first.mp3"]  # unpacked whole before it
    assert not (root / "c" / "second.mp3").exists() and not list(root.rglob(".unpacking-*"))


def test_what_a_killed_unpacking_left_is_removed_by_the_next(tmp_path, server):
    """A partial file is named by its process: the rerun after a SIGKILL (another pid) had left the dead
    one's in the audio folder for good. Another live process's, a download into the same folder, stays."""
    import os

    root = tmp_path / "mtat"
    (root / "0").mkdir(parents=True)
    dead, earlier, live = root / "0" / ".unpacking-99999999", root / "0" / "first.mp3.unpacking", \
        root / "0" / f".unpacking-{os.getppid()}"
    for path in (dead, earlier, live):
        path.write_bytes(b"half a member")
    # a number no process can have, or one only Unicode calls a number, had ended in a traceback; a folder of
    # such a name had made every later download fail ("Is a directory", naming nothing)
    odd = [root / "0" / ".unpacking-99999999999999999999", root / "0" / ".unpacking-\u00b2"]
    for path in odd:
        path.write_bytes(b"")
    (root / "0" / "notes.unpacking").mkdir()
    download_mtat(root, base_url=server.url)
    assert not dead.exists() and not earlier.exists() and live.exists() and not any(p.exists() for p in odd)
    assert (root / "0" / "notes.unpacking").is_dir()
    assert (root / "0" / "first.mp3").read_bytes() == FILES["0/first.mp3"]


def test_a_member_whose_name_is_as_long_as_the_file_system_takes_is_unpacked(tmp_path):
    """The file written beside a member had its name plus ".unpacking": a member of 246-255 bytes failed
    with "File name too long" where extractall had unpacked it."""
    from bench.data.download import safe_extract, safe_extract_tar

    name = "0/" + "x" * 251 + ".mp3"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(name, b"ID3 long")
    (tmp_path / "a.zip").write_bytes(buffer.getvalue())
    assert safe_extract(tmp_path / "a.zip", tmp_path / "z") == 1
    assert (tmp_path / "z" / name).read_bytes() == b"ID3 long"
    (tmp_path / "a.tar").write_bytes(jamendo_tar({name: b"ID3 long"}))
    assert safe_extract_tar(tmp_path / "a.tar", tmp_path / "t") == 2  # its folder, then the file
    assert (tmp_path / "t" / name).read_bytes() == b"ID3 long"


@pytest.mark.parametrize("name", [".", "a/..", "0/../"])
def test_a_file_member_named_as_the_target_itself_is_refused_and_nothing_is_written_beside_it(tmp_path, name):
    from bench.data.download import safe_extract

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(zipfile.ZipInfo(name.rstrip("/") or name), b"x")  # a file, whatever its name says
    (tmp_path / "a.zip").write_bytes(buffer.getvalue())
    with pytest.raises(UserError, match="refusing to extract"):
        safe_extract(tmp_path / "a.zip", tmp_path / "t")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip"]


def test_an_audio_folder_that_is_the_users_link_to_another_disk_is_unpacked_into(tmp_path, server):
    """The folder 0/ a link the user made to another disk: "refusing to extract '0/first.mp3' outside",
    after the parts' 3 GB had been fetched. A name leading out of the folder is still refused (below)."""
    root, elsewhere = tmp_path / "mtat", tmp_path / "big-disk" / "0"
    elsewhere.mkdir(parents=True)
    root.mkdir()
    (root / "0").symlink_to(elsewhere)
    download_mtat(root, base_url=server.url)
    assert (elsewhere / "first.mp3").read_bytes() == FILES["0/first.mp3"]


@pytest.mark.parametrize("error, hint", [(OSError(28, "No space left on device"), True),
                                         (PermissionError(13, "Permission denied"), False)])
def test_an_unpacking_that_fails_names_the_folder_and_space_only_when_space_ran_out(tmp_path, server, monkeypatch,
                                                                                    error, hint):
    from bench.data import download

    def fail(archive, target):
        raise error
    monkeypatch.setattr(download, "safe_extract", fail)
    root = tmp_path / "mtat"
    with pytest.raises(UserError) as info:
        download_mtat(root, base_url=server.url)
    assert str(info.value).startswith(f"cannot unpack mp3.zip.001 + mp3.zip.002 + mp3.zip.003 into {root}: "
                                      f"{error.strerror}")
    assert ("free space" in str(info.value)) == hint


def test_the_parts_read_as_one_file_wherever_a_read_starts(tmp_path):
    from bench.data.download import JoinedParts

    data = bytes(range(256)) * 7
    sizes = [700, 0, 1, 591, 500]  # an empty part and a one-byte part too
    paths, start = [], 0
    for i, size in enumerate(sizes):
        paths.append(tmp_path / f"p{i}")
        paths[-1].write_bytes(data[start:start + size])
        start += size
    joined = io.BufferedReader(JoinedParts(paths), 64)
    assert joined.read() == data
    for position, length in [(0, 10), (695, 10), (700, 3), (701, 600), (1790, 100), (1792, 5)]:
        joined.seek(position)
        assert joined.read(length) == data[position:position + length], (position, length)
    joined.seek(-5, io.SEEK_END)
    assert joined.read() == data[-5:] and joined.tell() == len(data)
    joined.close()


def test_archives_an_interrupted_run_left_behind_its_marker_go_in_the_rerun(tmp_path, server):
    root = tmp_path / "mtat"
    download_mtat(root, base_url=server.url, keep_archives=True)
    assert all((root / name).exists() for name in MTAT_PARTS)
    server.requests.clear()
    download_mtat(root, base_url=server.url)
    assert not any((root / name).exists() for name in MTAT_PARTS)
    assert [name for name, _ in server.requests] == []


def test_zip_slip_is_refused(tmp_path, server):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    data = buffer.getvalue()
    server.files.update({"mp3.zip.001": data, "mp3.zip.002": b"", "mp3.zip.003": b""})
    with pytest.raises(UserError, match="refusing to extract '../evil.txt'"):
        download_mtat(tmp_path / "mtat", base_url=server.url)
    assert not (tmp_path / "evil.txt").exists()


# ------------------------------------------------------------------------------------------------
# MTG-Jamendo: tar archives, published SHA-256, resumable


def jamendo_tar(members: dict[str, bytes]) -> bytes:
    """A tar as the dataset's archives are built: the folder NN/ first, then NN/ID.low.mp3 files."""
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in sorted({name.split("/")[0] for name in members}):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_jamendo_archives_are_checked_unpacked_and_resumed(tmp_path):
    import hashlib

    from bench.data import jamendo_checksums
    from bench.data.download import download_jamendo

    archives = {"raw_30s_audio-low-14.tar": jamendo_tar({"14/214.low.mp3": b"ID3" + b"a" * 3000}),
                "raw_30s_audio-low-82.tar": jamendo_tar({"82/382.low.mp3": b"ID3" + b"b" * 4000})}
    checksums = {name: hashlib.sha256(data).hexdigest() for name, data in archives.items()}
    s = Server(archives)
    try:
        base = s.url.replace("/datasets/magnatagatune/", "/mtg-jamendo/")
        root = tmp_path / "jamendo"
        root.mkdir()
        (root / "raw_30s_audio-low-82.tar.part").write_bytes(archives["raw_30s_audio-low-82.tar"][:700])
        download_jamendo(root, base_url=base, checksums=checksums)
        assert (root / "14/214.low.mp3").read_bytes() == b"ID3" + b"a" * 3000
        assert (root / "82/382.low.mp3").read_bytes() == b"ID3" + b"b" * 4000
        assert ("raw_30s_audio-low-82.tar", "bytes=700-") in s.requests  # resumed
        # the dataset's layout: raw_30s/audio-low/raw_30s_audio-low-NN.tar under the base address
        assert sorted(set(s.paths)) == [f"/mtg-jamendo/raw_30s/audio-low/raw_30s_audio-low-{n}.tar" for n in (14, 82)]
        assert not list(root.glob("*.tar"))  # archives removed once unpacked
        s.requests.clear()
        download_jamendo(root, base_url=base, checksums=checksums)
        assert s.requests == []  # everything is marked done
        # a corrupted archive is removed, and the error says to run again
        bad = {"raw_30s_audio-low-14.tar": "0" * 64}
        with pytest.raises(UserError, match=r"SHA-256 .* is not the published 0000000000000000.*run again"):
            download_jamendo(tmp_path / "again", base_url=base, checksums=bad)
        assert not (tmp_path / "again" / "raw_30s_audio-low-14.tar").exists()
    finally:
        s.close()
    # the published tables: 100 archives per quality, named as the server names them
    assert sorted(jamendo_checksums.AUDIO_LOW) == [f"raw_30s_audio-low-{i:02d}.tar" for i in range(100)]
    assert sorted(jamendo_checksums.AUDIO) == [f"raw_30s_audio-{i:02d}.tar" for i in range(100)]
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in jamendo_checksums.AUDIO.values())


def test_jamendo_tar_members_outside_the_target_are_refused(tmp_path):
    import hashlib

    from bench.data.download import download_jamendo

    archives = {"raw_30s_audio-low-00.tar": jamendo_tar({"00/../../evil.mp3": b"x"})}
    s = Server(archives)
    try:
        with pytest.raises(UserError, match="refusing to extract '00/../../evil.mp3'"):
            download_jamendo(tmp_path / "j", base_url=s.url,
                             checksums={n: hashlib.sha256(d).hexdigest() for n, d in archives.items()})
        assert not (tmp_path / "evil.mp3").exists()
    finally:
        s.close()


def test_a_base_url_without_a_scheme_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="download failed: www.example.org/mtat/mp3.zip.001: unknown url type"):
        fetch("www.example.org/mtat/mp3.zip.001", tmp_path / "mp3.zip.001")


def test_a_full_disk_while_downloading_is_said_as_one_not_as_a_network_fault(tmp_path, server, capsys, monkeypatch):
    # "download interrupted: ... No space left on device (run again to resume)" blamed the network
    import builtins
    import errno
    import os

    real_open = builtins.open

    class Full(io.RawIOBase):
        def writable(self):
            return True

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(builtins, "open", lambda path, mode="r", *a, **k: Full() if str(path).endswith(".part")
                        else real_open(path, mode, *a, **k))
    status = main(["download", "mtat", "--to", str(tmp_path / "mtat"), "--base-url", server.url])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"cannot write {tmp_path / 'mtat'}/" in err and ".part: No space left on device; free some space" in err
    assert "download interrupted" not in err
