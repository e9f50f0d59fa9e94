#!/usr/bin/python3
"""Fail when the object files under a build directory call each other in a
circle: file A depends on file B when A uses a global symbol B defines.

Usage: check-cycles.py LABEL BUILD_SUBDIR   (every *.o below it)
Prints each set of files that reach one another; exit 1 if there is one."""
import collections
import os
import subprocess
import sys


def objects(root):
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".o"):
                yield os.path.join(d, f)


def unit(path):
    base = os.path.basename(path)
    return base[:-len(".c.o")] if base.endswith(".c.o") else base


def main():
    label, root = sys.argv[1], sys.argv[2]
    defined, used = {}, collections.defaultdict(set)
    objs = sorted(objects(root))
    # One nm for all: -A prefixes each line with "file: ".
    out = subprocess.run(["nm", "-P", "-A"] + objs, check=True, capture_output=True,
                         text=True).stdout if objs else ""
    for line in out.splitlines():
        head, _, rest = line.partition(": ")
        f = rest.split()
        if len(f) < 2:
            continue
        o = unit(head.split("[")[-1].rstrip("]"))
        if f[1] in ("T", "D", "B", "R"):
            defined[f[0]] = o
        elif f[1] == "U":
            used[o].add(f[0])
    edges = collections.defaultdict(set)
    for a, syms in used.items():
        edges[a] |= {defined[s] for s in syms if s in defined and defined[s] != a}
    if not edges and not defined:
        print(f"{label}: no object files under {root}")
        return 1

    def reach(a):
        seen, todo = set(), [a]
        while todo:
            for b in edges[todo.pop()]:
                if b not in seen:
                    seen.add(b)
                    todo.append(b)
        return seen

    units = sorted(set(defined.values()) | set(used))
    r = {u: reach(u) for u in units}
    circles, placed = [], set()
    for u in units:
        if u in placed or u not in r[u]:
            continue
        c = sorted(v for v in units if v in r[u] and u in r[v])
        placed.update(c)
        circles.append(c)
    for c in circles:
        print(f"{label}: files calling each other in a circle: {' '.join(c)}")
    print(f"{label}: {len(units)} files, {sum(len(e) for e in edges.values())} dependencies, "
          f"{len(circles)} circles")
    return 1 if circles else 0


if __name__ == "__main__":
    sys.exit(main())
