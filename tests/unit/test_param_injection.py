"""Param values placed into shell scripts where the placement analyser misjudged
the quoting. Every shell form is an expansion, so a misjudged state never runs the value as
shell code by itself; but a bare ``${KIOK_PARAM_X}`` where the shell is really unquoted is
split into words and globbed, so one value becomes several arguments, and a command that runs
its arguments (``find -exec``, ``xargs``, ``tar --checkpoint-action``) then runs the value."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kiok.core.placeholders import Context, param_env, resolve
from kiok.errors import TaskError

#: Word splitting and globbing show as more than one bracketed argument.
SPLIT = "a  b * ?"


def placed(text: str, params: dict[str, Any]) -> str:
    return resolve(text, params=params, lookup_conn=None, now_ms=0, context=Context.SHELL)


def run(script: str, params: dict[str, Any], shell: str, cwd: Path) -> str:
    env = {"PATH": "/usr/bin:/bin", **param_env(params)}
    out = subprocess.run([shell, "-c", script], env=env, cwd=cwd, capture_output=True, check=False)
    return out.stdout.decode()


# (script, shell, expected output for SPLIT)
ONE_WORD = [
    # a command substitution inside double quotes is a new, unquoted context
    ('r="$(printf "[%s]" ${params.v})"; printf %s "$r"', "/bin/sh", "[a  b * ?]"),
    ('r="$(printf "[%s]" ${params.v})"; printf %s "$r"', "/bin/bash", "[a  b * ?]"),
    # the usual way: a quoted expansion in a quoted command substitution
    ('printf %s "$(printf "[%s]" "${params.v}")"', "/bin/sh", "[a  b * ?]"),
    ('r="`printf "[%s]" ${params.v}`"; printf %s "$r"', "/bin/sh", "[a  b * ?]"),
    ('printf %s "x$(printf "[%s]" ${params.v})y"', "/bin/bash", "x[a  b * ?]y"),
    # inside backticks, \$ is $ and (within double quotes) \" is "
    ('printf "[%s]" "`printf "<%s>" \\"${params.v}\\"`"', "/bin/sh", "[<a  b * ?>]"),
    ('printf "[%s]" "`printf "<%s>" \\${params.v}`"', "/bin/sh", "[<a  b * ?>]"),
    ('r=`printf "<%s>" \\${params.v}`; printf "[%s]" "$r"', "/bin/bash", "[<a  b * ?>]"),
    ('r=`printf "<%s>" \\${params.v}`; printf "[%s]" "$r"', "/bin/sh", "[<a  b * ?>]"),
    ('printf "[%s]" "`printf "<%s>" "\\${params.v}"`"', "/bin/sh", "[<a  b * ?>]"),
    # a case pattern's ")" does not end the command substitution
    ('printf "[%s]" "$(case a in a) printf %s ${params.v};; esac)"', "/bin/sh", "[a  b * ?]"),
    ('printf "[%s]" "$(case a in (a) printf %s ${params.v};; esac)"', "/bin/bash", "[a  b * ?]"),
    # ... and so is one inside an unquoted heredoc's body
    (
        "cat <<A; cat <<B\n1${params.v}\nA\n2$(printf '[%s]' ${params.v})\nB",
        "/bin/sh",
        "1a  b * ?\n2[a  b * ?]\n",
    ),
    ("cat <<EOF\n$(printf '[%s]' ${params.v})\nEOF", "/bin/sh", "[a  b * ?]\n"),
    # '<<' in an arithmetic command is a shift, not a heredoc that swallows the script
    ("(( y = 1 << 2 ))\nprintf '[%s]' ${params.v}", "/bin/bash", "[a  b * ?]"),
    ("printf '[%s]' $[1<<2]\nprintf '[%s]' ${params.v}", "/bin/bash", "[4][a  b * ?]"),
    # an escaped blank does not end a word: the '#' after it starts no comment
    ("printf '[%s]' a\\ #b ${params.v}", "/bin/sh", "[a #b][a  b * ?]"),
    # an escaped placeholder is the author's literal text; it must not shift later quotes
    (
        "printf '[%s]' \"\\${params.v}\"; printf '[%s]' \"x ${params.v}\"",
        "/bin/sh",
        "[${KIOK_PARAM_V}][x a  b * ?]",
    ),
    ("printf '[%s]' \\${params.v} \"${params.v}\"", "/bin/sh", "[${KIOK_PARAM_V}][a  b * ?]"),
    ("printf '[%s]' $'\\${params.v}' \"${params.v}\"", "/bin/bash", "[\\${KIOK_PARAM_V}][a  b * ?]"),
    # '#{' is kiok's date function, replaced before the shell reads the script: no comment
    ("printf '[%s]' #{nowFormatted('yyyy')} ${params.v}", "/bin/sh", "[1970][a  b * ?]"),
    ('printf "[%s]" #{nowFormatted("yyyy")} "${params.v}"', "/bin/sh", "[1970][a  b * ?]"),
    ("printf '[%s]' #{nowFormatted('${params.v}')}", "/bin/sh", "[a  b * ?]"),
    # a '#' inside ${...} starts no comment either
    ("printf '[%s]' ${u:- #} ${params.v}", "/bin/sh", "[#][a  b * ?]"),
    # a here-string opens no heredoc: the lines after it are script, not a body
    ("read a b <<< \"$HOME\"\nprintf '[%s]' ${params.v}", "/bin/bash", "[a  b * ?]"),
    ("cat <<<word >/dev/null\nprintf '[%s]' ${params.v}", "/bin/bash", "[a  b * ?]"),
    # a case word with blanks, a substitution or a parenthesis of its own, inside $(...)
    (
        'printf "[%s]" "$(case "$(echo Linux)" in Linux) printf %s ${params.v};; esac)"',
        "/bin/sh",
        "[a  b * ?]",
    ),
    ('printf "[%s]" "$(case "a b" in "a b") printf %s ${params.v};; esac)"', "/bin/sh", "[a  b * ?]"),
    ('printf "[%s]" "$(case `echo a` in a) printf %s ${params.v};; esac)"', "/bin/sh", "[a  b * ?]"),
    ('u=x; printf "[%s]" "$(case ${u%(} in x) printf %s ${params.v};; esac)"', "/bin/bash", "[a  b * ?]"),
]


@pytest.mark.parametrize(("script", "shell", "expected"), ONE_WORD)
def test_a_param_stays_one_word_wherever_it_stands(
    script: str, shell: str, expected: str, tmp_path: Path
) -> None:
    (tmp_path / "f1").touch()
    (tmp_path / "f2").touch()
    assert run(placed(script, {"v": SPLIT}), {"v": SPLIT}, shell, tmp_path) == expected


def test_a_value_cannot_run_through_find_in_a_quoted_command_substitution(tmp_path: Path) -> None:
    """The reported attack: a DAG counts matches with ``"$(find ... -name ${params.p})"``; the
    value, split into words, adds ``-exec`` and runs a command of the triggering user's."""
    value = "x -o -exec touch pwned ;"
    script = placed('n="$(find . -maxdepth 1 -name ${params.p} | wc -l)"; echo "$n"', {"p": value})
    run(script, {"p": value}, "/bin/sh", tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_a_value_cannot_run_through_find_after_a_date_function(tmp_path: Path) -> None:
    """``#{...}`` at the start of a word is no shell comment: it is a date by the time the
    shell reads the line, and the param after it must still be one word."""
    value = "x -o -exec touch pwned ;"
    script = placed(
        "find . -maxdepth 1 -newermt #{nowFormatted('yyyy-MM-dd')} -name ${params.p}", {"p": value}
    )
    run(script, {"p": value}, "/bin/sh", tmp_path)
    assert not (tmp_path / "pwned").exists()


# Forms that already worked must keep working.
STILL = [
    ('printf %s "hello ${params.v}"', "/bin/sh", "hello a  b * ?"),
    ('r=$(printf "[%s]" ${params.v}); printf %s "$r"', "/bin/sh", "[a  b * ?]"),
    ("cat <<EOF\n<${params.v}>\nEOF", "/bin/sh", "<a  b * ?>\n"),
    ("cat <<'EOF'\n$(x ${params.v})\nEOF", "/bin/sh", "$(x ${KIOK_PARAM_V})\n"),
    ('printf %s "${u:-${params.v}}"', "/bin/sh", "a  b * ?"),
    ("printf '[%s]' ${u:-${params.v}}", "/bin/sh", "[a  b * ?]"),
    ("echo $(( ${params.n} + 1 ))", "/bin/sh", "22\n"),
    ('echo "$(( $(echo 1) + ${params.n} ))"', "/bin/sh", "22\n"),
    ("printf '[%s]' $(case x in x) printf %s ok;; esac) ${params.v}", "/bin/bash", "[ok][a  b * ?]"),
    ("# ${params.v}\nprintf %s ok", "/bin/sh", "ok"),
    ("printf '[%s]' \"#{nowFormatted('${params.v}')}\"", "/bin/sh", "[a  b * ?]"),
]


@pytest.mark.parametrize(("script", "shell", "expected"), STILL)
def test_forms_that_worked_still_do(script: str, shell: str, expected: str, tmp_path: Path) -> None:
    params = {"v": SPLIT, "n": 21}
    assert run(placed(script, params), params, shell, tmp_path) == expected


@pytest.mark.parametrize("value", [".", "..", "..."])
def test_a_url_param_cannot_be_a_dot_segment(value: str) -> None:
    """``.`` and ``..`` are unreserved, so percent-encoding left them as they were, and a
    client (httpx) removes dot segments: ``/users/${params.id}/profile`` with ``..`` asked for
    ``/profile``. Encoded, they are one segment's text, as every other value is."""
    import httpx

    url = resolve(
        "https://h.invalid/users/${params.id}/profile?q=${params.id}",
        params={"id": value},
        lookup_conn=None,
        now_ms=0,
        context=Context.URL,
    )
    request = httpx.Request("GET", url)
    assert request.url.path == f"/users/{value}/profile"
    assert request.url.params["q"] == value


def test_a_string_param_in_bash_arithmetic_does_not_run(tmp_path: Path) -> None:
    value = "a[$(touch pwned)]"
    with pytest.raises(TaskError, match="must be an integer"):
        placed("echo $(( ${params.n} + 1 ))", {"n": value})
    assert run(placed("echo $(( ${params.n} + 1 ))", {"n": 41}), {"n": 41}, "/bin/bash", tmp_path) == "42\n"
    assert not (tmp_path / "pwned").exists()


# A small grammar of scripts in which the value must stay one word: every substitution's
# output is quoted, so only a misjudged placement can split it.
_PLAIN = st.sampled_from(["x", "#{nowInMillis()}", "${#u}", "$#", "$((1+2))", "$[1<<2]", "'it''s'", "\\ #"])
_PARAM = st.just("${params.v}")


def _cmd(word: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(word, min_size=1, max_size=3).map(lambda ws: "printf '[%s]' " + " ".join(ws))


def _scripts() -> st.SearchStrategy[str]:
    def extend(word: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        cmd = _cmd(word)
        piece = st.one_of(
            _PLAIN,
            _PARAM,
            cmd.map(lambda c: f"$({c})"),
            cmd.filter(lambda c: "`" not in c).map(lambda c: f"`{c}`"),
            st.just("$(case a in a) printf %s ${params.v};; esac)"),
        )
        return st.one_of(
            st.lists(piece, max_size=3).map(lambda ps: '"' + "".join(ps) + '"'),
            word.map(lambda w: "${u:-" + w + "}"),
            st.lists(piece, max_size=3).map(lambda ps: '"${u:-' + "".join(ps) + '}"'),
        )

    word = st.recursive(st.one_of(_PLAIN, _PARAM, _PLAIN.map(lambda p: f"'{p}'")), extend, max_leaves=6)
    statement = st.one_of(
        _cmd(word),
        _cmd(word).map(lambda c: c + " # ${params.v} '"),
        st.lists(st.one_of(_PLAIN, _PARAM, _cmd(word).map(lambda c: f"$({c})")), max_size=3).map(
            lambda ps: "cat <<E\n" + "".join(ps) + "\nE"
        ),
        st.just("(( y = 1 << 2 ))"),
        st.just("# ${params.v} ' \" $("),
    )
    return st.lists(statement, min_size=1, max_size=4).map("\n".join)


def _outputs(shell: str, text: str, value: str, cwd: Path) -> tuple[int, str]:
    env = {"PATH": "/usr/bin:/bin", **param_env({"v": value})}
    out = subprocess.run(
        [shell, "-c", text], env=env, cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL, timeout=20
    )
    return out.returncode, out.stdout.decode(errors="replace")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=_scripts())
def test_a_value_is_never_split_in_any_script(script: str, tmp_path: Path) -> None:
    """Differential: whatever script the grammar makes, the output with a value that would
    be split and globbed is the output with a plain one, the plain one replaced."""
    assume("${params.v}" in script)
    try:
        text = placed(script, {"v": "Z"})
    except TaskError:
        return
    (tmp_path / "f1").touch()
    for shell in ("/bin/sh", "/bin/bash"):
        if subprocess.run([shell, "-n", "-c", text], capture_output=True).returncode:
            continue
        code, plain = _outputs(shell, text, "Z", tmp_path)
        if code == 0:
            assert _outputs(shell, text, SPLIT, tmp_path)[1] == plain.replace("Z", SPLIT), (shell, text)
