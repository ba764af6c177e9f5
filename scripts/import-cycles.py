#!/usr/bin/env python3
"""Lists import cycles between the modules of each crate in the workspace.

An edge A -> B means a file of module A names something defined in module B
(`use crate::b::X`, `use super::X`, `crate::b::f()` in code).  A name reached
through a re-export (`pub use b::X` in the crate root) counts where it is
defined, as rust-analyzer resolves it: a facade is not a cycle.  What a module
takes from its own ancestors (`use super::X` for an X its parent defines) is
not an edge either: Rust's privacy is built for children that implement their
parent's items.  Declaring a child (`mod b;`) is not an edge; importing from it
(`use b::X`) is.  So a cycle here is one between siblings or cousins.
Exit status 1 when any crate has a cycle, with each cycle printed.

    python3 scripts/import-cycles.py [-v] [CRATE ...]   (default: every crate)

-v shows, for each edge of a cycle, the paths that make it.
"""
import os
import re
import sys

CRATES = ["protocol", "node", "cli", "tests", "bench", "python", "fuzz", "firmware"]


def module_files(src):
    """Maps module path tuples to files for one crate's src/ folder."""
    mods = {}
    for root, _dirs, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            if rel == "main.rs" and os.path.exists(os.path.join(src, "lib.rs")):
                parts = ["<bin>"]
            mods[tuple(parts)] = os.path.join(root, f)
    return mods


def strip(text):
    """Drops comments, strings and the file's inline test module."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return re.split(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text)[0]


def expand(tree):
    """Expands `a::{b, c::{d}}` into ['a::b', 'a::c::d']."""
    tree = tree.strip()
    m = re.match(r"^([\w:]*?)::\{(.*)\}$", tree, flags=re.S)
    if not m:
        return [tree]
    prefix, body = m.group(1), m.group(2)
    out, depth, cur = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [prefix + "::" + x for part in out if part.strip() for x in expand(part)]


def resolve(path, here, mods, binds=None, depth=0):
    """Module defining what a crate/super/self path used in `here` names."""
    segs = [s.split(" as ")[0].strip() for s in path.split("::")]
    if not segs:
        return None
    if segs[0] == "crate":
        base, rest = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base = here
        rest = segs
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    else:
        base, rest = here, segs  # a child module named directly
        if not rest or (here + (rest[0],)) not in mods:
            return None
    best, used = base, 0
    for i in range(1, len(rest) + 1):
        cand = base + tuple(rest[:i])
        if cand in mods:
            best, used = cand, i
    if binds is not None and depth < 12 and used < len(rest):
        target = binds.get(best, {}).get(rest[used])
        if target is not None:
            again = resolve(target, best, mods, binds, depth + 1)
            if again is not None:
                return again
    return best


def parse(mods):
    """Each module's stripped text and the paths of its `use` items (read once)."""
    out = {}
    for here, path in mods.items():
        with open(path, encoding="utf-8") as f:
            text = strip(f.read())
        uses = [p.strip() for m in re.finditer(r"\buse\s+([^;]+);", text) for p in expand(m.group(1))]
        out[here] = (text, uses)
    return out


def bindings(parsed):
    """Names each module brings in with `use` (its own and re-exported)."""
    out = {}
    for here, (_text, uses) in parsed.items():
        names = {}
        for p in uses:
            if p.endswith("*"):
                continue
            alias = p.split(" as ")[-1].strip() if " as " in p else p.split("::")[-1]
            if alias == "self":
                alias = p.split("::")[-2] if "::" in p else alias
                p = p.rsplit("::", 1)[0]
            names[alias] = p.split(" as ")[0].strip()
        out[here] = names
    return out


def edges(mods):
    """The module graph, and for each edge the paths that make it."""
    parsed = parse(mods)
    binds = bindings(parsed)
    graph = {m: set() for m in mods}
    why = {}
    for here, (text, uses) in parsed.items():
        paths = uses + re.findall(r"\b(?:crate|super)(?:::\w+)+", text)
        for p in paths:
            target = resolve(p, here if here != ("<bin>",) else (), mods, binds)
            upward = target is not None and here[: len(target)] == target
            if target is not None and not upward and target in mods:
                graph[here].add(target)
                why.setdefault((here, target), set()).add(p)
    return graph, why


def cycles(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def name(m):
    return "::".join(m) or "<root>"


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args = [a for a in sys.argv[1:] if a != "-v"]
    verbose = "-v" in sys.argv[1:]
    crates = args or [c for c in CRATES if os.path.isdir(os.path.join(root, c, "src"))]
    bad = 0
    for c in crates:
        mods = module_files(os.path.join(root, c, "src"))
        graph, why = edges(mods)
        for comp in cycles(graph):
            bad += 1
            inner = [
                f"{name(a)} -> {name(b)}" + (f"  ({', '.join(sorted(why[(a, b)])[:4])})" if verbose else "")
                for a in comp
                for b in sorted(graph[a])
                if b in comp
            ]
            print(f"{c}: cycle among {', '.join(name(m) for m in comp)}")
            for e in inner:
                print(f"    {e}")
    if bad:
        print(f"{bad} import cycle(s)")
        return 1
    print(f"no import cycles in {', '.join(crates)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
