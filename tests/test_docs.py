"""The README and docs/ stay true: the README short, every link live, every command parseable.

The README is what a newcomer reads in ten minutes (what the project is, `make demo` / `make
test`, the demo's front, a tour, links); the rest lives in docs/ by topic. These checks keep it
so: the README's length, every relative link and image of the README and docs/*.md (a `#anchor`
must name a heading of its page, by GitHub's slug rules), every `proxyless` command in a fenced
shell block (parsed by the real CLI parser, so a renamed flag fails here, not in a reader's
shell), the repository files those blocks name and the make targets the README names. No Ray,
no training: a second or two.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from nas_core.errors import ProxylessError
from orchestrator.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 250
# Untagged blocks hold printed output too; its `proxyless: error: …` lines are no command.
SHELL_LANGS = {"bash", "sh", "shell", "console", ""}
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "2>", "2>&1", "<"}
REPO_PREFIXES = ("configs/", "cluster/configs/", "benchmarks/")
CLONE = "~/proxyless-tune/"  # the clone the cluster commands name on the head node

FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
INLINE_CODE = re.compile(r"`[^`]*`")  # may span a line break inside a paragraph
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
MAKE = re.compile(r"(?:^|[\s;&|(])make\s+([A-Za-z0-9_.-]+)")


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _split(text: str) -> tuple[list[tuple[str, list[str]]], str]:
    """(fenced blocks as (language, lines), the prose with the blocks blanked out)."""
    blocks: list[tuple[str, list[str]]] = []
    prose: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            blocks.append((m.group(2).lower(), []))
            prose.append("")
        elif fence is not None and line.strip().startswith(fence) and not line.strip(fence[0]):
            fence = None
            prose.append("")
        elif fence is not None:
            blocks[-1][1].append(line)
            prose.append("")
        else:
            prose.append(line)
    assert fence is None, "an unclosed ``` block"
    return blocks, "\n".join(prose)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text lowercased, punctuation but - dropped, spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor on `page`; a repeated heading gets -1, -2, … as on GitHub."""
    _, prose = _split(page.read_text())
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in prose.splitlines():
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    """Every Markdown link and image target in `page`'s prose (not in code)."""
    _, prose = _split(page.read_text())
    return LINK.findall(INLINE_CODE.sub("", prose))


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:: not checked
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_file():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    return broken


def shell_lines(page: Path) -> list[str]:
    """The logical lines of `page`'s shell blocks: continuations joined, comment lines dropped."""
    blocks, _ = _split(page.read_text())
    lines: list[str] = []
    for lang, body in blocks:
        if lang not in SHELL_LANGS:
            continue
        pending = ""
        for raw in body:
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            line = (pending + raw).strip()
            pending = ""
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def proxyless_args(line: str) -> list[str] | None:
    """The arguments after `proxyless` in a shell line, or None when it runs no `proxyless`.

    The command may follow env-var assignments or a launcher (`ray job submit ... --`) and
    ends at a shell operator or a comment. `$VAR` and `"$var"` stay literal words: argparse
    accepts any string where a path goes, so no placeholder needs skipping.
    """
    tokens = shlex.split(line, comments=True)
    for i, token in enumerate(tokens):
        if Path(token).name == "proxyless":
            args = []
            for arg in tokens[i + 1 :]:
                if arg in SHELL_OPERATORS:
                    break
                args.append(arg)
            return args
    return None


def unparsable(page: Path) -> list[str]:
    parser = build_parser()
    bad = []
    for line in shell_lines(page):
        args = proxyless_args(line)
        if args is None:
            continue
        try:
            parser.parse_args(args)
        except (ProxylessError, SystemExit) as e:
            bad.append(f"{line}\n    -> {e}")
    return bad


def repo_paths(page: Path) -> list[str]:
    """Words of `page`'s shell blocks that name a file of this repository (configs, benchmarks)."""
    words = []
    for line in shell_lines(page):
        for token in shlex.split(line, comments=True):
            word = token.removeprefix(CLONE)
            if word.startswith(REPO_PREFIXES):
                words.append(word)
    return words


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, flags=re.MULTILINE))


def test_readme_is_a_ten_minute_read() -> None:
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; move sections into docs/"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_and_image_resolves(page: Path) -> None:
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_readme_links_every_docs_page() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README)}
    missing = [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]
    assert not missing, f"README.md links no docs page {missing}"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_proxyless_command_parses(page: Path) -> None:
    bad = unparsable(page)
    assert not bad, f"{page.relative_to(ROOT)}: the CLI refuses\n" + "\n".join(bad)


def test_the_readme_shows_proxyless_commands() -> None:
    """The parse check above is not vacuous: the README's tour runs `proxyless` commands."""
    commands = [a for a in map(proxyless_args, shell_lines(README)) if a is not None]
    assert {a[0] for a in commands} >= {"sweep", "export", "pareto"}, commands


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_files_named_in_commands_exist(page: Path) -> None:
    missing = [w for w in repo_paths(page) if not (ROOT / w).exists()]
    assert not missing, f"{page.relative_to(ROOT)} runs files that do not exist: {missing}"


def test_make_targets_named_in_the_readme_exist() -> None:
    blocks, prose = _split(README.read_text())
    code = [*INLINE_CODE.findall(prose), *(line for _, body in blocks for line in body)]
    named = {m for chunk in code for m in MAKE.findall(chunk.strip("`"))}
    assert {"demo", "test"} <= named, named
    missing = named - make_targets()
    assert not missing, f"README.md names make targets the Makefile lacks: {sorted(missing)}"


def test_the_readme_answers_is_the_search_worth_it_briefly() -> None:
    text = README.read_text()
    section = text.split("## Is the search worth it?", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.strip()]
    assert 3 <= len(lines) <= 6, lines
    assert "(docs/search_vs_random.md)" in section


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_each_docs_page_opens_with_what_a_user_does(page: Path) -> None:
    """A title, then a paragraph of prose before the first section, list or code block."""
    lines = page.read_text().splitlines()
    assert lines[0].startswith("# "), lines[0]
    first = next(line for line in lines[1:] if line.strip())
    assert not first.startswith(("#", "```", "-", "|", "!")), f"{page.name} opens with {first!r}"


def test_slug_follows_github() -> None:
    assert slug("Distributed search on Ray (`cluster/`)") == "distributed-search-on-ray-cluster"
    assert slug("Two devices: one CPU at 1 and at 2 threads") == (
        "two-devices-one-cpu-at-1-and-at-2-threads"
    )
    assert slug("Is the search worth it?") == "is-the-search-worth-it"
