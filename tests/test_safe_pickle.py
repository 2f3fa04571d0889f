"""The restricted unpickler of the MSD split files (bench/data/safe_pickle.py).

The split files of Lee et al. are Python 2 cPickle dumps of lists, dicts, strings, numbers and numpy
arrays; nothing else may be looked up while reading one. The hostile pickles below are assembled
opcode by opcode (pickletools' opcode table: GLOBAL `c`, INST `i`, OBJ `o`, STACK_GLOBAL 0x93, REDUCE
`R`, MARK `(`, TUPLE `t`, LIST `l`, UNICODE `V`, BINUNICODE `X`, PROTO 0x80, STOP `.`); most of them,
if their globals were resolved, would leave a marker file behind.
"""

from __future__ import annotations

import io
import pickle
import struct
import sys

import numpy as np
import pytest

from bench.core.errors import UserError
from bench.data.safe_pickle import _ALLOWED, UnsafePickleError, _RestrictedUnpickler, safe_load

# Everything the split files (and numpy arrays pickled by Python 2 or 3) need, and nothing more.
ALLOWED = {
    ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "str"), ("builtins", "bytes"), ("builtins", "int"),
    ("builtins", "float"), ("builtins", "bool"), ("builtins", "complex"),
    # Python 2 names of the same types (bytes: how Python 3 names b"" at protocol 2)
    ("__builtin__", "list"), ("__builtin__", "dict"), ("__builtin__", "tuple"), ("__builtin__", "set"),
    ("__builtin__", "frozenset"), ("__builtin__", "str"), ("__builtin__", "unicode"), ("__builtin__", "int"),
    ("__builtin__", "long"), ("__builtin__", "float"), ("__builtin__", "bool"), ("__builtin__", "complex"),
    ("__builtin__", "bytes"),
    # numpy arrays and scalars (numpy 1 and numpy 2 module names)
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    # arrays in protocol 5 (Python 3.8+'s default): numpy's _frombuffer, which makes no object arrays
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    # bytes in protocol-2 pickles written by Python 3
    ("_codecs", "encode"),
}

DANGEROUS = [
    ("os", "system"), ("posix", "system"), ("nt", "system"), ("os", "popen"), ("os", "execv"), ("os", "remove"),
    ("subprocess", "Popen"), ("subprocess", "run"), ("subprocess", "check_output"),
    ("builtins", "getattr"), ("builtins", "setattr"), ("builtins", "eval"), ("builtins", "exec"),
    ("builtins", "compile"), ("builtins", "__import__"), ("builtins", "open"), ("builtins", "globals"),
    ("builtins", "type"), ("builtins", "object"), ("builtins", "breakpoint"), ("builtins", "input"),
    ("__builtin__", "eval"), ("__builtin__", "getattr"), ("__builtin__", "open"), ("__builtin__", "execfile"),
    ("pickle", "loads"), ("_pickle", "loads"), ("marshal", "loads"), ("codecs", "encode"),
    ("numpy", "load"), ("numpy", "loadtxt"), ("numpy", "fromfile"), ("numpy.testing._private.utils", "runstring"),
    ("importlib", "import_module"), ("sys", "modules"), ("shutil", "rmtree"), ("runpy", "run_path"),
    # dotted names (protocol 4 walks attributes) starting from an allowed type
    ("builtins", "list.__class__"), ("builtins", "str.__class__.__subclasses__"), ("numpy", "ndarray.tofile"),
    ("_codecs", "encode.__self__"),
]


# ------------------------------------------------------------------------------------------------
# a tiny pickle assembler: a global, a call, a string or a list of them


def G(module: str, name: str) -> tuple:
    return ("global", module, name)


def call(function, *args) -> tuple:
    return ("call", function, args)


def _string(text: str, protocol: int) -> bytes:
    if protocol == 0:  # as pickle.py escapes it: the opcode's argument ends at the newline
        for char, escape in (("\\", "\\u005c"), ("\0", "\\u0000"), ("\n", "\\u000a"), ("\r", "\\u000d")):
            text = text.replace(char, escape)
        return b"V" + text.encode("raw_unicode_escape") + b"\n"
    data = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def _emit(node, protocol: int) -> bytes:
    if isinstance(node, str):
        return _string(node, protocol)
    if isinstance(node, list):
        return b"(" + b"".join(_emit(item, protocol) for item in node) + b"l"
    if node[0] == "global":
        _, module, name = node
        if protocol == 0:
            return b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        return _string(module, protocol) + _string(name, protocol) + b"\x93"
    _, function, args = node
    return _emit(function, protocol) + b"(" + b"".join(_emit(a, protocol) for a in args) + b"tR"


def assemble(node, protocol: int) -> bytes:
    """Protocol 0 (GLOBAL + REDUCE, as cPickle wrote) or protocol 4 (STACK_GLOBAL + REDUCE)."""
    return (b"\x80\x04" if protocol == 4 else b"") + _emit(node, protocol) + b"."


def inst(module: str, name: str, *args: str) -> bytes:
    """Protocol 0's INST: MARK args... `i`module\\nname\\n -> module.name(*args)."""
    return b"(" + b"".join(_string(a, 0) for a in args) + b"i" + module.encode() + b"\n" + name.encode() + b"\n."


def obj(module: str, name: str, *args: str) -> bytes:
    """Protocol 4's OBJ: MARK callable args... `o` -> callable(*args)."""
    return (b"\x80\x04(" + _emit(G(module, name), 4) + b"".join(_string(a, 4) for a in args) + b"o.")


def payloads(marker: str) -> dict[str, tuple[tuple[str, str], object]]:
    """id -> (the first global the pickle looks up, the pickle's tree). Resolved, each would create
    `marker`, except `__import__` (which would import a module) and numpy.load (which would read a file)."""
    touch = f"touch {marker}"
    write = f"open({marker!r}, 'w').write('x')"
    # the bytes a nested pickle.loads would get, via the allowed _codecs.encode
    inner = assemble(call(G("os", "system"), touch), 0).decode("latin1")
    return {
        "os.system": (("os", "system"), call(G("os", "system"), touch)),
        "posix.system": (("posix", "system"), call(G("posix", "system"), touch)),
        "subprocess.Popen": (("subprocess", "Popen"), call(G("subprocess", "Popen"), ["touch", marker])),
        "builtins.eval": (("builtins", "eval"), call(G("builtins", "eval"), write)),
        "builtins.exec": (("builtins", "exec"), call(G("builtins", "exec"), write)),
        "builtins.open": (("builtins", "open"), call(G("builtins", "open"), marker, "w")),
        "builtins.getattr": (("builtins", "getattr"),  # getattr(__import__("os"), "system")(touch)
                             call(call(G("builtins", "getattr"), call(G("builtins", "__import__"), "os"), "system"),
                                  touch)),
        "builtins.__import__": (("builtins", "__import__"), call(G("builtins", "__import__"), "pty")),
        "__builtin__.eval": (("__builtin__", "eval"), call(G("__builtin__", "eval"), write)),
        "pickle.loads": (("pickle", "loads"),
                         call(G("pickle", "loads"), call(G("_codecs", "encode"), inner, "latin1"))),
        "numpy.runstring": (("numpy.testing._private.utils", "runstring"),
                            call(G("numpy.testing._private.utils", "runstring"), write, call(G("builtins", "dict")))),
        "numpy.load": (("numpy", "load"), call(G("numpy", "load"), marker)),
    }


def test_the_allow_list_is_exactly_containers_strings_numbers_and_numpy_arrays():
    assert _ALLOWED == ALLOWED
    unpickler = _RestrictedUnpickler(io.BytesIO(b""), "probe")
    for module, name in sorted(ALLOWED):
        assert unpickler.find_class(module, name) is not None  # each one resolves
    for module, name in DANGEROUS:
        with pytest.raises(UnsafePickleError, match=rf"probe: refusing to unpickle {module}\.{name} "):
            unpickler.find_class(module, name)


@pytest.mark.parametrize("protocol", [0, 4])
@pytest.mark.parametrize("ident", list(payloads("marker")))
def test_hand_built_malicious_pickles_are_refused_before_anything_runs(tmp_path, protocol, ident):
    marker = tmp_path / "ran"
    (module, name), tree = payloads(str(marker))[ident]
    imported_before = set(sys.modules)
    path = tmp_path / "msd_id_to_tag_vector.cP"
    path.write_bytes(assemble(tree, protocol))
    with pytest.raises(UnsafePickleError) as info:
        safe_load(path)
    assert str(info.value).startswith(f"{path}: refusing to unpickle {module}.{name} "), ident
    assert not marker.exists()
    assert {"subprocess", "pty"} & (set(sys.modules) - imported_before) == set()


@pytest.mark.parametrize("build", [inst, obj], ids=["INST", "OBJ"])
@pytest.mark.parametrize("module,name", [("os", "system"), ("posix", "system"), ("builtins", "exec")])
def test_instantiating_opcodes_are_refused_too(tmp_path, build, module, name):
    marker = tmp_path / "ran"
    argument = f"touch {marker}" if name == "system" else f"open({str(marker)!r}, 'w').write('x')"
    path = tmp_path / "x.cP"
    path.write_bytes(build(module, name, argument))
    with pytest.raises(UnsafePickleError, match=rf"refusing to unpickle {module}\.{name} "):
        safe_load(path)
    assert not marker.exists()


def test_the_assembler_builds_working_pickles(tmp_path):
    """The same assembler's pickles of allowed globals load, so a refusal above is the allow-list's doing."""
    for protocol in (0, 4):
        tree = call(G("builtins", "dict"), [call(G("builtins", "tuple"), ["TR1", "rock"])])
        path = tmp_path / f"ok{protocol}.cP"
        path.write_bytes(assemble(tree, protocol))
        assert safe_load(path) == {"TR1": "rock"}
        # and through the plain pickle module, which resolves anything: the hostile tree really runs
        marker = tmp_path / f"ran{protocol}"
        pickle.loads(assemble(call(G("builtins", "open"), str(marker), "w"), protocol)).close()
        assert marker.exists()
    path = tmp_path / "arrays.cP"
    path.write_bytes(pickle.dumps({"a": np.arange(3, dtype=np.int16), "s": {1.5, 2}}, protocol=2))
    loaded = safe_load(path)
    assert loaded["a"].tolist() == [0, 1, 2] and loaded["a"].dtype == np.int16 and loaded["s"] == {1.5, 2}


def test_a_pickle_that_is_not_one_is_a_user_error_not_a_crash(tmp_path):
    path = tmp_path / "x.cP"
    path.write_bytes(b"\x80\x04X\xff\xff\xff\x7f")  # a string longer than the file
    with pytest.raises(UserError, match="not a readable pickle"):
        safe_load(path)
