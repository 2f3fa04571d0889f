"""`bench download mtat` against a local HTTP server serving small fake parts (no internet here)."""

import http.server
import io
import threading
import zipfile

import pytest

from bench.cli import main
from bench.data.download import EXTRACTED_MARKER, MTAT_PARTS, download_mtat, fetch
from bench.errors import UserError

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
    """Serves `files` on 127.0.0.1, honouring `Range: bytes=N-` unless told not to."""

    def __init__(self, files, honour_range=True):
        self.files = files
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append((name, self.headers.get("Range")))
                if name not in outer.files:
                    self.send_error(404)
                    return
                data = outer.files[name]
                start = 0
                if honour_range and self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    self.send_response(206)
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


def test_zip_slip_is_refused(tmp_path, server):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    data = buffer.getvalue()
    server.files.update({"mp3.zip.001": data, "mp3.zip.002": b"", "mp3.zip.003": b""})
    with pytest.raises(UserError, match="refusing to extract '../evil.txt'"):
        download_mtat(tmp_path / "mtat", base_url=server.url)
    assert not (tmp_path / "evil.txt").exists()
