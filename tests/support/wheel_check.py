"""Checks a built pylstm wheel before anything installs it.

    python tests/support/wheel_check.py WHEEL [TAG]

The wheel must be tagged TAG (a platform-tag prefix: `manylinux` unless given), hold compiled
modules whose symbol tables are stripped and none of the sources they are built from (no `.c`,
`.pyx`, `.pxd`, `.h`: those travel in the sdist), keep the type stubs (`.pyi`), and its
metadata must require numpy, scipy and threadpoolctl alone, everything else behind an extra. Prints the
wheel's size and its compiled modules. Exits non-zero with every problem found.
"""

import email.parser
import sys
import zipfile
from pathlib import Path

SOURCES = (".c", ".pyx", ".pxd", ".h")
RUNTIME = {"numpy", "scipy", "threadpoolctl"}


def requirement_name(line):
    """The project name of a Requires-Dist line, lower-cased: `numpy` of `numpy>=1.23`."""
    name = line.split(";")[0]
    for stop in "<>=!~[ (":
        name = name.split(stop)[0]
    return name.strip().lower()


def problems(path, tag):
    found = []
    tags = Path(path).stem.split("-")[-1]
    if not any(part.startswith(tag) for part in tags.split(".")):
        found.append(f"platform tag {tags!r} is not {tag}")
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        sources = [n for n in names if n.endswith(SOURCES)]
        if sources:
            found.append(f"sources inside: {', '.join(sources)}")
        if not any(n.startswith("pylstm/") and n.endswith(".pyi") for n in names):
            found.append("no type stubs (.pyi)")
        modules = [n for n in names if n.endswith((".so", ".pyd"))]
        if not modules:
            found.append("no compiled module")
        for name in modules:
            size = wheel.getinfo(name).file_size
            print(f"  {name}  {size:,} bytes")
            # an ELF file keeps the name of its symbol table (.symtab) until it is stripped
            if name.endswith(".so") and b"\0.symtab\0" in wheel.read(name):
                found.append(f"{name} is not stripped")
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        message = email.parser.Parser().parsestr(wheel.read(metadata).decode())
    required = {requirement_name(line) for line in message.get_all("Requires-Dist") or []
                if "extra ==" not in line}
    if required != RUNTIME:
        found.append(f"runtime requirements {sorted(required)}, expected {sorted(RUNTIME)}")
    return found


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    path = argv[1]
    tag = argv[2] if len(argv) == 3 else "manylinux"
    print(f"{Path(path).name}: {Path(path).stat().st_size:,} bytes")
    found = problems(path, tag)
    for problem in found:
        print(f"FAIL {problem}", file=sys.stderr)
    if found:
        sys.exit(1)
    print("wheel_check: tagged, stripped, no sources, numpy, scipy and threadpoolctl the only "
          "requirements")


if __name__ == "__main__":
    main(sys.argv)
