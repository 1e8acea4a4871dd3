#!/usr/bin/env python3
"""Builds crates/words/data/words.txt, the 65,536-word dictionary of p2p-foundation-words.

Reproducible: the output depends only on the Debian word lists named below and on
data/offensive.txt. Run it after

    apt-get install -y wamerican-small wamerican wamerican-large

with no arguments to rewrite data/words.txt, or with --check to verify that the committed file
is exactly what this script builds from the installed packages.

Rules (documented in docs/protocols/words.md, section "Dictionary"):

1. Candidates: every line of wamerican-large's /usr/share/dict/american-english-large that is
   3 to 9 lowercase ASCII letters (this drops proper nouns, possessives and accented words).
2. Drop every word that matches data/offensive.txt (exact entries, or `root*` prefixes).
3. Commonness tier of a word: 0 if it is in wamerican-small, 1 if in wamerican (medium),
   2 otherwise (large only).
4. Typo neighbours: two words are neighbours when they share a deletion key (the word itself or
   the word with one letter deleted); this covers every pair at edit distance 1 (substitution,
   insertion, deletion) and adjacent transpositions. While more than 65,536 words remain, drop
   the tier-2 word with the most neighbours among the remaining words (ties: the longer word,
   then the alphabetically later word), updating neighbour counts as words go. Dropping the most
   crowded rare words first makes single typos in the kept words more often correctable.
5. Order (the index of a word is its 16-bit value): by tier, then by length, then
   alphabetically. Easy, common, short words come first.
"""
import argparse
import hashlib
import heapq
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

SIZE = 65536
WORD = re.compile(r"^[a-z]{3,9}$")
DICT = Path("/usr/share/dict")
LISTS = [
    ("wamerican-small", DICT / "american-english-small"),
    ("wamerican", DICT / "american-english"),
    ("wamerican-large", DICT / "american-english-large"),
]
HERE = Path(__file__).resolve().parent.parent
OUT = HERE / "data" / "words.txt"
FILTER = HERE / "data" / "offensive.txt"


def package_version(name):
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True
    )
    if out.returncode != 0 or not out.stdout:
        sys.exit(f"{name} is not installed: apt-get install -y {name}")
    return out.stdout.strip()


def read_list(path):
    with open(path, encoding="utf-8") as f:
        return {line.strip() for line in f if WORD.match(line.strip())}


def load_filter():
    exact, prefixes = set(), []
    for line in FILTER.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("*"):
            prefixes.append(line[:-1])
        else:
            exact.add(line)
    return exact, prefixes


def keys(word):
    yield word
    for i in range(len(word)):
        yield word[:i] + word[i + 1 :]


def build():
    versions = [(name, package_version(name)) for name, _ in LISTS]
    small, medium, large = (read_list(path) for _, path in LISTS)
    exact, prefixes = load_filter()
    offensive = {w for w in large if w in exact or any(w.startswith(p) for p in prefixes)}
    candidates = large - offensive
    tier = {w: 0 if w in small else 1 if w in medium else 2 for w in candidates}

    buckets = defaultdict(set)
    for w in candidates:
        for k in set(keys(w)):
            buckets[k].add(w)

    def neighbours(w):
        out = set()
        for k in set(keys(w)):
            out |= buckets[k]
        out.discard(w)
        return out

    count = {w: len(neighbours(w)) for w in candidates}
    alive = set(candidates)
    heap = [(-count[w], -len(w), tuple(-ord(c) for c in w), w) for w in candidates if tier[w] == 2]
    heapq.heapify(heap)
    dropped = 0
    while len(alive) > SIZE:
        negc, _, _, w = heapq.heappop(heap)
        if w not in alive:
            continue
        if -negc != count[w]:  # stale entry: push the current count back
            heapq.heappush(heap, (-count[w], -len(w), tuple(-ord(c) for c in w), w))
            continue
        alive.discard(w)
        dropped += 1
        for n in neighbours(w):
            if n in alive:
                count[n] -= 1
                if tier[n] == 2:
                    heapq.heappush(heap, (-count[n], -len(n), tuple(-ord(c) for c in n), n))
        for k in set(keys(w)):
            buckets[k].discard(w)

    words = sorted(alive, key=lambda w: (tier[w], len(w), w))
    assert len(words) == SIZE == len(set(words))
    tiers = [sum(1 for w in words if tier[w] == t) for t in range(3)]
    lonely = sum(1 for w in words if count[w] == 0)
    header = [
        "# p2p-foundation-words dictionary v1: 65536 words, one per line; line N (from 0) is value N.",
        "# Built by crates/words/tools/build-dictionary.py from Debian "
        + ", ".join(f"{n} {v}" for n, v in versions)
        + ".",
        "# Rules: 3-9 lowercase ASCII letters from wamerican-large, minus data/offensive.txt"
        f" ({len(offensive)} words), minus {dropped} rare words with the most typo neighbours.",
        f"# Order: tier (wamerican-small {tiers[0]}, wamerican {tiers[1]}, large only {tiers[2]}),"
        " then length, then alphabetical.",
    ]
    text = "\n".join(header + words) + "\n"
    stats = {
        "candidates": len(large),
        "offensive": len(offensive),
        "dropped": dropped,
        "tiers": tiers,
        "no_neighbour": lonely,
    }
    return text, stats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify data/words.txt, write nothing")
    args = parser.parse_args()
    text, stats = build()
    digest = hashlib.sha256(text.encode()).hexdigest()
    print(f"{stats}\nsha256 {digest}", file=sys.stderr)
    if args.check:
        if OUT.read_text(encoding="utf-8") != text:
            sys.exit(f"{OUT} differs from what the installed word lists build")
        print("data/words.txt is up to date", file=sys.stderr)
    else:
        OUT.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
