"""The shell words of a task template, and the places where a token's value could become code.

A template is split once into words with ``shlex``; each word keeps its span in the text, so the
command keeps every word without a token exactly as written. A word that holds a string-valued
token is sent as one ``shlex.quote``-d word, so the value is one literal argument, wherever the
template put quotes. That alone is not enough where the command reading the argument evaluates
it: ``eval``, ``bash -c``, ``trap``, ``let``, ``printf -v``, ``declare``, arithmetic, ``[[ ]]``,
array subscripts, assignments, or a name that a function or alias could stand for. So a string
token may stand only as a plain argument of a command that does not evaluate its arguments, and
everything else is refused with one line naming the token.

What a template does with data at run time (writes it to a file and runs that file, pipes it to a
shell) is the template's own code: reviewing the template shows it, and nothing here hides it.
"""

from __future__ import annotations

import io
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

OPERATOR_CHARS = "();<>|&"
QUOTING_CHARS = "'\"\\"

#: What may share a word with a string token: text the shell takes literally (no ``$``, glob,
#: brace, tilde, backslash or operator), and quotes.
LITERAL_WORD = re.compile(r"[A-Za-z0-9_\-./:=,+%@'\" \t]*\Z")
PLAIN_NAME = re.compile(r"[A-Za-z0-9_./+-]+\Z")
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[.*\])?\+?=", re.DOTALL)
#: Constructs whose quoting nests differently in the shell than in ``shlex`` (command
#: substitution, ``${...}`` beyond a bare name, ``$'...'``, backticks) or whose body is read
#: again (here-documents): beside a string token they are refused.
UNCHECKABLE = re.compile(r"`|\$[('\"]|\$\{(?![A-Za-z_][A-Za-z0-9_]*\})|(?<!<)<<(?!<)")


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Every builtin and reserved word of bash and dash.
SHELL_WORDS = _names(
    ". : [ [[ ]] alias bg bind break builtin caller case cd chdir command compgen complete"
    " compopt continue coproc declare dirs disown do done echo elif else enable esac eval exec"
    " exit export false fc fg fi for function getopts hash help history if in jobs kill let local"
    " logout mapfile popd printf pushd pwd read readarray readonly return select set shift shopt"
    " source suspend test then time times trap true type typeset ulimit umask unalias unset until"
    " wait while { } !"
)
#: Builtins that take their arguments as plain text.
SAFE_BUILTINS = frozenset({"echo", "cd", ":", "true", "false"})
#: Reserved words after which the next word is a command.
PREFIX_WORDS = _names("! { } then do else elif if while until fi done esac")
#: Programs that run their arguments as a command or as code.
RUNNERS = _names(
    "env nohup nice ionice timeout xargs sudo su doas runuser chroot setsid stdbuf taskset flock"
    " watch ssh rsh script unbuffer strace ltrace gdb parallel busybox awk gawk mawk nawk sed find"
    " expect make m4 at batch systemd-run"
)
#: Interpreters: safe only when their first argument is a script named by the template.
INTERPRETER = re.compile(
    r"(python|pypy|perl|ruby|node|nodejs|php|lua|tclsh|wish|sh|bash|dash|zsh|ksh|mksh|yash"
    r"|fish|csh|tcsh|pwsh|osascript)[0-9.]*\Z"
)


@dataclass(frozen=True)
class Word:
    """One shell word or operator: its span in the template, the text there, its unquoted value.

    ``mixed`` marks a word that joins quotes to operator characters, which cannot be told apart.
    """

    start: int
    end: int
    text: str
    value: str
    operator: bool = False
    mixed: bool = False


def split_words(text: str) -> list[Word]:
    """The template's words and operators, split once as the shell splits them.

    Raises ValueError on an unclosed quote.
    """
    stream = io.StringIO(text)
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    words: list[Word] = []
    position = 0
    while (value := lexer.get_token()) is not None:
        start = position
        while text[start] in lexer.whitespace:
            start += 1
        position = stream.tell()
        end = position
        if end > start and text[end - 1] in lexer.whitespace and _ends_unquoted(text, start, end):
            end -= 1
        words.extend(_operators_apart(Word(start, end, text[start:end], value)))
    return words


def _ends_unquoted(text: str, start: int, end: int) -> bool:
    """Whether the word's last read character was the whitespace that ended it."""
    try:
        return shlex.split(text[start : end - 1]) == shlex.split(text[start:end])
    except ValueError:
        return False


def _operators_apart(word: Word) -> list[Word]:
    """A word written without quotes split at its operators (``a;b`` is ``a``, ``;``, ``b``)."""
    lexer = shlex.shlex(word.text, posix=True, punctuation_chars=OPERATOR_CHARS)
    lexer.whitespace_split = True
    lexer.commenters = ""
    parts = list(lexer)
    if len(parts) == 1 and parts[0] == word.value and not _is_operator(word.text):
        return [word]
    if any(char in word.text for char in QUOTING_CHARS):
        return [Word(word.start, word.end, word.text, word.value, mixed=True)]
    pieces: list[Word] = []
    position = word.start
    for part in parts:
        start = word.text.index(part, position - word.start) + word.start
        position = start + len(part)
        pieces.append(Word(start, position, part, part, operator=_is_operator(part)))
    return pieces


def _is_operator(text: str) -> bool:
    return all(char in OPERATOR_CHARS for char in text)


@dataclass(frozen=True)
class Mark:
    """A token's stand-in character in the template: how it is shown, and its kind of value."""

    shown: str
    kind: str  # "string", "list" (several words) or "plain" (a number or a fixed word)


def refusal(
    text: str, words: Sequence[Word], marks: Mapping[str, Mark], scripts: frozenset[str]
) -> str | None:
    """Why a string token in ``text`` could become code, or None when none can.

    ``text`` holds one stand-in character per token (``marks``); ``scripts`` are the stand-ins
    that name a script an interpreter may run (the render wrapper).
    """
    strings = [char for char in text if char in marks and marks[char].kind != "plain"]
    if not strings:
        return None
    first = marks[strings[0]].shown
    construct = UNCHECKABLE.search(text)
    if construct is not None:
        return (
            f"token {first} cannot be checked in a template that uses {construct.group(0)!r}"
            " (command substitution, ${...}, backticks or a here-document); use plain words"
        )
    for word in words:
        reason = _word_refusal(word, marks)
        if reason:
            return reason
    items = _items(text, words)
    if isinstance(items, str):
        return f"token {first} cannot be checked: {_shown(items, marks)}"
    return _command_refusal(items, marks, scripts, first)


def _word_refusal(word: Word, marks: Mapping[str, Mark]) -> str | None:
    held = [marks[char] for char in word.text if char in marks and marks[char].kind != "plain"]
    if not held:
        return None
    shown = held[0].shown
    literal = "".join(char for char in word.text if char not in marks)
    if not LITERAL_WORD.match(literal):
        odd = sorted({char for char in literal if not LITERAL_WORD.match(char)})
        return (
            f"token {shown} shares the word {_shown(word.text, marks)} with {''.join(odd)!r},"
            " which the shell reads; write the token as a word of its own"
        )
    if any(mark.kind == "list" for mark in held) and len(word.value) != 1:
        return f"token {shown} stands for several words, so it must be a word of its own"
    return None


def _shown(text: str, marks: Mapping[str, Mark]) -> str:
    return "".join(marks[char].shown if char in marks else char for char in text)


Item = tuple[bool, str]  # (is an operator, text)


def _items(text: str, words: Sequence[Word]) -> list[Item] | str:
    """Words and operators in order; a newline between words is an operator too."""
    items: list[Item] = []
    previous = 0
    for word in words:
        if "\n" in text[previous : word.start]:
            items.append((True, "\n"))
        previous = word.end
        if word.mixed:
            return f"{word.text} joins quotes to shell operators; put spaces between them"
        items.append((word.operator, word.value))
    return items


def _command_refusal(
    items: Sequence[Item], marks: Mapping[str, Mark], scripts: frozenset[str], first: str
) -> str | None:
    """Walk the commands; refuse a string token anywhere but a plain argument of a safe command."""
    expect_command = True
    command = ""
    arguments: list[str] = []
    span = ""  # "((" or "[[" while inside arithmetic or a [[ test
    redirect = False
    for is_operator, part in items:
        held = [marks[c].shown for c in part if c in marks and marks[c].kind != "plain"]
        if is_operator:
            if span == "((":
                if "))" in part:
                    span, expect_command = "", True
                continue
            if span == "[[":
                continue
            if "(" in part and command and not arguments and not expect_command:
                return f"token {first} cannot be checked: the template defines a function {command}"
            if "((" in part:
                span = "(("
            elif "<" in part or ">" in part:
                if any(char in part for char in ";|()"):
                    return f"token {first} cannot be checked: put a space inside {part!r}"
                redirect = True
            else:
                expect_command, command, arguments = True, "", []
            continue
        if span == "((":
            if held:
                return f"token {held[0]} stands inside (( )), where the shell evaluates it"
            continue
        if span == "[[":
            if part == "]]":
                span = ""
            elif held:
                return f"token {held[0]} stands inside [[ ]], where bash evaluates words"
            continue
        if redirect:
            redirect = False
            if held:
                return f"token {held[0]} stands as a redirection target; pass it as an argument"
            continue
        if expect_command:
            if ASSIGNMENT.match(part):
                if held:
                    return (
                        f"token {held[0]} stands in an assignment, where the shell may evaluate it"
                    )
                continue
            if part in PREFIX_WORDS:
                continue
            if held:
                return f"token {held[0]} stands as a command name; pass it as an argument"
            if part in ("alias", "function"):
                return f"token {first} cannot be checked: the template defines {part} names"
            command, arguments, expect_command = part, [], False
            if part == "[[":
                span = "[["
            continue
        arguments.append(part)
        if held:
            reason = _argument_refusal(command, arguments, marks, scripts)
            if reason:
                return f"token {held[0]} {reason}"
    return None


def _argument_refusal(
    command: str, arguments: Sequence[str], marks: Mapping[str, Mark], scripts: frozenset[str]
) -> str | None:
    """Why the last of ``arguments`` (which holds a string token) is not safe for ``command``."""
    if not PLAIN_NAME.match(command):
        return f"is an argument of {command!r}, which is not a plain command name"
    name = command.rsplit("/", 1)[-1]
    if name in SAFE_BUILTINS:
        return None
    if name == "printf" or INTERPRETER.match(name):
        script = arguments[0]
        fixed = not any(char in marks for char in script) and not script.startswith("-")
        if len(arguments) > 1 and (fixed or script in scripts):
            return None
        if len(arguments) == 1 and script in scripts and name != "printf":
            return None
        return (
            f"is an argument of {name}, whose first argument must be a script or format"
            " named in the template"
        )
    if name in SHELL_WORDS:
        return f"is an argument of the shell's {name}, which may evaluate it"
    if name in RUNNERS:
        return f"is an argument of {name}, which runs its arguments as a command or as code"
    return None
