"""Params are data, never code: hostile values placed into shell, python, URLs and JSON come
out as exactly the value, and the interpreter runs nothing the DAG author did not write."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiok.core.placeholders import Context, param_env, resolve, shell_single_quoted_params
from kiok.core.placement import shell_value_problem
from kiok.errors import TaskError

HOSTILE = [
    'x"; id; head -c 12 ../../master.key; echo "',
    "$(id)",
    "`id`",
    "; id",
    "a\nid\nb",
    "it's",
    "'; id; echo '",
    '"); import os; os.system("id"); ("',
    "'''; import os; os.system('id'); '''",
    '"""',
    "\\",
    "\\'",
    "${HOME}",
    "#{nowInMillis()}",
    "${secret.api}",
    "EOF\nid\nEOF",
    "é€😀\t\r",
    "{}",
    "x" * 70_000,
]

values = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00", exclude_categories=["Cs"]), max_size=40
)


def placed(text: str, context: Context, params: dict[str, Any]) -> str:
    return resolve(text, params=params, lookup_conn=None, now_ms=0, context=context)


def run_sh(script: str, params: dict[str, Any], shell: str = "/bin/sh") -> str:
    env = {"PATH": "/usr/bin:/bin", **param_env(params)}
    out = subprocess.run([shell, "-c", script], env=env, capture_output=True, check=True)
    return out.stdout.decode()


def run_py(script: str) -> str:
    out = subprocess.run([sys.executable, "-"], input=script.encode(), capture_output=True, check=True)
    return out.stdout.decode()


SHELL_FORMS = [
    ('printf %s "hello ${params.v}"', "hello {}"),
    ("printf %s hello${params.v}", "hello{}"),
    ("cat <<EOF\n[${params.v}]\nEOF", "[{}]\n"),
    ("cat <<-EOF\n\t<${params.v}>\n\tEOF", "<{}>\n"),
    ("# ${params.v}\nprintf %s ok", "ok"),
]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(("script", "expected"), SHELL_FORMS)
def test_shell_gets_the_value_as_data(script: str, expected: str, value: str) -> None:
    text = placed(script, Context.SHELL, {"v": value})
    assert "params." not in text
    shell = "/bin/bash" if "$'" in script else "/bin/sh"  # ANSI-C quotes are bash's
    assert run_sh(text, {"v": value}, shell) == expected.format(value)


@pytest.mark.parametrize("script", ["echo $((${params.n} + 1))", 'echo "$(( ${params.n} * 2 - 40 ))"'])
def test_shell_arithmetic_gets_the_bare_expansion(script: str) -> None:
    assert run_sh(placed(script, Context.SHELL, {"n": 21}), {"n": 21}) in ("22\n", "2\n")


# Where bash evaluates an expansion as arithmetic, an array subscript in the value runs its
# command substitution (`a[$(>pwned)]`): no quoting helps, so only integers are placed.
BASH_ARITHMETIC = [
    "echo $(( ${params.n} + 1 ))",
    'echo "$(( ${params.n} * 2 ))"',
    "echo $[${params.n} + 1]",
    "(( x = ${params.n} + 1 )); echo $x",
    "for (( i = 0; i < ${params.n}; i++ )); do :; done; echo $i",
    "for((i=0;i<${params.n};i++)); do :; done; echo $i",
    "if((${params.n} > 1)); then echo y; fi",
    "[[ ${params.n} -eq 3 ]] && echo y",
    '[[ "${params.n}" -gt 2 ]] && echo y',
    "if [[ 4 -ge ${params.n} ]]; then echo y; fi",
    "if [[ 1 -eq 1 &&\n      ${params.n} -gt 0 ]]; then echo y; fi",
    "[[ ${params.n} \\\n   -eq 3 ]] && echo y",
    "s=abcdef; echo ${s:${params.n}:2}",
    "s=abcdef; i=1; echo ${s:${i}:${params.n}}",
    "a=(1 2 3 4); echo ${a[@]:${params.n}}",
    "set -- a b c d; echo ${@:${params.n}}",
    "set -- a b c d; echo ${*:1:${params.n}}",
    "set -- abcdef; echo ${1:${params.n}}",
    "a=(abcdef); echo ${a[0]:${params.n}}",
    "a=(abcdef); i=0; echo ${a[i]:1:${params.n}}",
    "x=abcdef; r=x; echo ${!r:${params.n}}",
    "let x=${params.n}+1; echo $x",
    'if let "x=${params.n}"; then echo $x; fi',
    "command let x=${params.n}; echo $x",
    "declare -i x=${params.n}; echo $x",
    "f() { local -i x=${params.n}; echo $x; }; f",
]


@pytest.mark.parametrize("script", BASH_ARITHMETIC)
def test_a_string_in_bash_arithmetic_is_refused_and_an_integer_runs(script: str, tmp_path: Path) -> None:
    hostile = {"n": f"a[$(>{tmp_path}/pwned)]"}  # no blank: survives word splitting
    naive = script.replace("${params.n}", "${KIOK_PARAM_N}")  # the attack is real there
    subprocess.run(["/bin/bash", "-c", naive], env=param_env(hostile), capture_output=True, check=False)
    assert (tmp_path / "pwned").exists()
    with pytest.raises(TaskError, match=r"param 'n' .* must be an integer"):
        placed(script, Context.SHELL, hostile)
    for value in (3, "3", "0x3"):
        assert run_sh(placed(script, Context.SHELL, {"n": value}), {"n": value}, "/bin/bash").strip()


# Builtins that take a variable name expand its subscript again, as does a compound
# assignment to an indexed array: there a plain `$(...)` in the value runs.
BASH_NAMES = [
    'declare -A b; unset "b[${params.k}]"; echo ok',
    'declare -A b; printf -v "b[${params.k}]" x; echo ok',
    'declare -A b; read "b[${params.k}]" <<< x; echo ok',
    'declare -A b; declare "b[${params.k}]=1"; echo ok',
    'declare -a a=(1 2); test -v "a[${params.k}]"; echo ok',
    'declare -a a=(1 2); declare -n ref="a[${params.k}]"; echo $ref ok',
    "c=([${params.k}]=1); echo ok",
    'c=(["${params.k}"]=1); echo ok',
]


@pytest.mark.parametrize("script", BASH_NAMES)
def test_an_expansion_in_a_name_bash_expands_again_is_refused(script: str, tmp_path: Path) -> None:
    hostile = {"k": f"$(>{tmp_path}/pwned)"}
    naive = script.replace("${params.k}", "${KIOK_PARAM_K}")
    subprocess.run(["/bin/bash", "-c", naive], env=param_env(hostile), capture_output=True, check=False)
    assert (tmp_path / "pwned").exists()
    with pytest.raises(TaskError, match=r"param 'k' is part of a variable name"):
        placed(script, Context.SHELL, hostile)
    assert "ok" in run_sh(placed(script, Context.SHELL, {"k": "1"}), {"k": "1"}, "/bin/bash")


@pytest.mark.parametrize(
    "value", ["a[$(id)]", "x[`id`]", "x[${y:=$(id)}]", "a[ $( id ) ]", ["b[$(id)]"], {"k": "c[$(id)]"}]
)
def test_a_value_holding_a_subscript_with_an_expansion_is_refused_for_shell_tasks(value: Any) -> None:
    """Whatever the script: bash runs it wherever the text reaches arithmetic, also by ways
    no reading of the script sees (a name referring to this param's variable)."""
    assert "holds text bash would expand" in (shell_value_problem("v", value) or "")


#: Subscripts whose brackets nest or are quoted (a reported attack: a trigger-only user's
#: ``x[b[0]$(id)]`` passed the check, which took the first ``]`` for the subscript's end).
NESTED_SUBSCRIPTS = [
    "x[b[0]$(echo RAN >&2)]",
    "x[b[0]`echo RAN >&2`]",
    "x[b[0]${V:-$(echo RAN >&2)}]",
    "a[\\]$(echo RAN >&2)]",
    "a[']'$(echo RAN >&2)]",
    'a["]"$(echo RAN >&2)]',
    "a[b[0]$[$(echo RAN >&2)]]",
]
#: A plain ``$NAME`` in a subscript: its value is evaluated again (found by review: two params
#: put the command substitution together).
SPLIT_SUBSCRIPT = {"X": "a[$Y$Z]", "Y": "b[", "Z": "$(echo RAN >&2)]"}


@pytest.mark.parametrize("value", NESTED_SUBSCRIPTS)
def test_a_subscript_that_nests_or_quotes_its_brackets_is_refused(value: str) -> None:
    ran = subprocess.run(
        ["/bin/bash", "-c", "echo $((X))"], env={"X": value}, capture_output=True, text=True, timeout=10
    )
    assert "RAN" in ran.stderr  # bash does run it: the value is code
    assert "holds text bash would expand" in (shell_value_problem("v", value) or "")


def test_a_subscript_put_together_from_two_values_is_refused() -> None:
    ran = subprocess.run(
        ["/bin/bash", "-c", "echo $((X))"], env=SPLIT_SUBSCRIPT, capture_output=True, text=True, timeout=10
    )
    assert "RAN" in ran.stderr
    assert "holds text bash would expand" in (shell_value_problem("x", SPLIT_SUBSCRIPT["X"]) or "")


def test_the_subscript_check_is_linear() -> None:
    """It was quadratic in the number of '[' (a 256 KiB arg held the master's GIL for minutes)."""
    started = time.process_time()
    for value in ("[" * 200_000, "[]" * 100_000, json.dumps([[]] * 50_000), ["[" * 100_000]):
        assert shell_value_problem("v", value) is None
    assert time.process_time() - started < 2


#: Scripts that write the ``[`` around ``${params.x}`` themselves, each of which bash runs a
#: value's command substitution in (a reported attack: a trigger-only user's ``$(id)`` ran in
#: each; the value held no ``[``, and the script's shape was not one the analyser knew).
SCRIPT_SUPPLIES_THE_SUBSCRIPT = [
    'declare -A seen; IFS= read -r "seen[${params.v}]" <<< value',
    "arr=(\n  [${params.v}]=first\n)",
    'm=(1 2); case x in *) unset "m[${params.v}]" ;; esac',
    'counts=(0 0 0); slot="counts[${params.v}]"; echo "$(( slot + 1 ))"',
    'declare -A cfg=([a]=1); ref="cfg[${params.v}]"; echo "${!ref}"',
]


@pytest.mark.parametrize("script", SCRIPT_SUPPLIES_THE_SUBSCRIPT)
def test_a_value_bash_could_expand_is_refused_whatever_the_script(script: str) -> None:
    hostile = {"v": "$(echo RAN >&2)"}
    naive = script.replace("${params.v}", "${KIOK_PARAM_V}")
    ran = subprocess.run(["/bin/bash", "-c", naive], env=param_env(hostile), capture_output=True, text=True)
    assert "RAN" in ran.stderr  # the attack is real there
    assert "holds text bash would expand" in (shell_value_problem("v", hostile["v"]) or "")


@pytest.mark.parametrize(
    "value", ["^[a-z]+$", "[1, 2]", "[x] costs $5", "a[1]", [1, 2], "[a] 5$ 6$", "100$", "$ 5", {"k": "$0"}]
)
def test_other_values_reach_shell_tasks(value: Any) -> None:
    assert shell_value_problem("v", value) is None


@pytest.mark.parametrize(
    "script",
    [
        "echo ${params.n}",
        "[[ ${params.n} == abc ]] || echo no",
        "echo ${x:-${params.n}}",
        "cat <<EOF\nitems[${params.n}]\nEOF",
        "(( 1 )); echo ${params.n}",
        "[[ a ]]; echo ${params.n} -eq 1",
        'declare -A url=([dev]=a [prod]=b); echo "${url[${params.n}]}"',
        "declare -A seen; seen[${params.n}]=1; echo ${!seen[@]}",
        'echo "Deploying (let ${params.n} win)"',
        'echo "{let ${params.n}}"',
        "echo x[${params.n}]=y",
        'printf "%s\\n" "[[ ${params.n} -eq 1 ]]"',
    ],
)
def test_text_next_to_bash_arithmetic_and_names_is_still_placed(script: str) -> None:
    for value in ("prod", "$(id)"):
        out = run_sh(placed(script, Context.SHELL, {"n": value}), {"n": value}, "/bin/bash")
        assert "uid=" not in out


# Quoted text is what a script hands another program as code: the value's characters must
# not get there, in any form (a reported attack: a trigger-only user's value ran in the trap
# and sent the resolved script, secrets and all, to the log).
SINGLE_QUOTED = [
    "printf %s 'a${params.v}b'",
    "printf %s $'a${params.v}b'",
    "trap 'echo \"finished ${params.v}\"' EXIT",
    "sh -c 'echo shc: ${params.v}'",
    "echo '$(( ${params.v} ))'",
    "echo \"$(echo '${params.v}')\"",
    # A backslash-newline joins the lines: this ``#`` is inside a word, no comment.
    "echo a\\\n#b '${params.v}'",
]


@pytest.mark.parametrize("script", SINGLE_QUOTED)
def test_a_param_inside_single_quotes_is_refused(script: str) -> None:
    with pytest.raises(TaskError, match=r"\$\{params\.v\} stands inside single quotes"):
        placed(script, Context.SHELL, {"v": "$(id)"})
    assert shell_single_quoted_params(script) == ["v"]


@pytest.mark.parametrize(
    "script",
    [
        'echo "it\'s ${params.v}"',  # a quote inside double quotes opens nothing
        "echo 'a' ${params.v} 'b'",
        "echo \\'${params.v}",
        "cat <<'EOF'\n${params.v}\nEOF",
        "printf '[%s]' #{nowFormatted('${params.v}')}",
        "# it's ${params.v}",
        # A backslash-newline joins the lines: this ``#`` starts a word, so a comment.
        'echo a \\\n# it\'s a comment\necho "${params.v}"',
        "echo a \\\n\\\n# it's a comment\necho ${params.v}",
    ],
)
def test_a_param_next_to_single_quotes_is_not_in_them(script: str) -> None:
    assert shell_single_quoted_params(script) == []
    placed(script, Context.SHELL, {"v": "$(id)"})


def test_a_quoted_heredoc_keeps_its_text_literal() -> None:
    text = placed("cat <<'EOF'\n${params.v}\nEOF", Context.SHELL, {"v": "$(id)"})
    assert run_sh(text, {"v": "$(id)"}) == "${KIOK_PARAM_V}\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_shell_any_value(value: str) -> None:
    text = placed('printf %s "${params.v}"; printf %s ${params.v}', Context.SHELL, {"v": value})
    assert run_sh(text, {"v": value}) == value * 2


PYTHON_FORMS = [
    ('print("hello ${params.v}", end="")', "hello {}"),
    ("print('${params.v}', end='')", "{}"),
    ('print("""${params.v}""", end="")', "{}"),
    ("print('''x\n${params.v}''', end='')", "x\n{}"),
    ('print(f"{1}${params.v}", end="")', "1{}"),
    ('print(b"${params.v}".decode(), end="")', "{}"),
    ("x = ${params.v}\nprint(x, end='')", "{}"),
    ("print(${params.v}, end='')  # ${params.v}", "{}"),
]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(("script", "expected"), PYTHON_FORMS)
def test_python_gets_the_value_as_data(script: str, expected: str, value: str) -> None:
    text = placed(script, Context.PYTHON, {"v": value})
    assert run_py(text) == expected.format(value)


@settings(max_examples=200, deadline=None)
@given(values.filter(bool))  # an empty value leaves one part fewer in an f-string
def test_python_code_shape_does_not_depend_on_the_value(value: str) -> None:
    """The parsed program is the same whatever the value: only a string constant differs."""
    script = 'import sys\nprint("a ${params.v}", ${params.v}, f"{1}${params.v}")  # ${params.v}'

    def shape(text: str) -> str:
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                node.value = "_"
        return ast.dump(tree)

    text = placed(script, Context.PYTHON, {"v": value})
    assert shape(text) == shape(placed(script, Context.PYTHON, {"v": "plain"}))
    assert value in [c.value for c in ast.walk(ast.parse(text)) if isinstance(c, ast.Constant)]


def test_python_typed_values_are_literals() -> None:
    params = {"n": 3, "f": 1.5, "b": True, "o": {"k": ["x", None]}}
    text = placed("print(${params.n} + 1, ${params.f}, ${params.b}, ${params.o})", Context.PYTHON, params)
    assert run_py(text) == "4 1.5 True {'k': ['x', None]}\n"


@pytest.mark.parametrize(
    ("script", "problem"),
    [
        ('print(r"${params.v}")', "raw string"),
        ("print(x${params.v})", "part of the python code"),
        ('print("${params.v}', "fix its syntax"),
    ],
)
def test_python_places_that_cannot_hold_data_are_refused(script: str, problem: str) -> None:
    with pytest.raises(TaskError, match=problem):
        placed(script, Context.PYTHON, {"v": "x"})


@pytest.mark.parametrize(
    "declaration",
    ["# -*- coding: unicode_escape -*-", "#!/usr/bin/env python3\n# vim: set fileencoding=unicode-escape :"],
)
def test_a_source_encoding_that_would_decode_a_value_into_code_is_refused(
    declaration: str, tmp_path: Path
) -> None:
    """A reported attack: ``unicode_escape`` decoded the ``\\x22`` a quote is placed as back into
    a quote before Python parsed the script, and a trigger-only user's value ran."""
    hostile = {"v": '"); print(40 + 2); ("'}
    script = declaration + '\nprint("hello ${params.v}")\n'
    naive = script.replace("${params.v}", _escape_like_placement(hostile["v"]))
    assert "\n42\n" in run_py_file(naive, tmp_path)  # the attack is real there
    with pytest.raises(TaskError, match="declares its source encoding"):
        placed(script, Context.PYTHON, hostile)
    # Lines end at a lone carriage return too, as Python reads them (found by review).
    with pytest.raises(TaskError, match="declares its source encoding"):
        placed("\r# -*- coding: unicode_escape -*-\nprint('${params.v}')\n", Context.PYTHON, hostile)
    # Any encoding but UTF-8, ASCII and Latin-1 is refused, harmless ones too (utf-7 here).
    with pytest.raises(TaskError, match="declares its source encoding 'utf-7' \\(line 1\\)"):
        placed("# coding: utf-7\n" + script, Context.PYTHON, hostile)


def _escape_like_placement(value: str) -> str:
    return "".join(f"\\x{ord(c):02x}" for c in value)


@pytest.mark.parametrize(
    "declaration", ["# -*- coding: utf-8 -*-", "# coding=latin-1", "# coding: ascii", "# coding: utf_8_sig"]
)
def test_a_plain_source_encoding_declaration_is_fine(declaration: str, tmp_path: Path) -> None:
    script = declaration + '\nprint("hello ${params.v}")\n'
    assert run_py_file(placed(script, Context.PYTHON, {"v": '"); x("'}), tmp_path) == 'hello "); x("\n'


def run_py_file(script: str, tmp_path: Path) -> str:
    """As a task runs it: from a file (Python read from stdin refuses a declared encoding)."""
    path = tmp_path / "task.py"
    path.write_text(script)
    return subprocess.run([sys.executable, str(path)], capture_output=True, check=True).stdout.decode()


@pytest.mark.parametrize("script", ['print(f"c {${params.v}}")', "print(f'{ {1: ${params.v}}[1]!r}')"])
def test_a_param_in_an_f_string_field_is_refused_before_python_3_12(script: str) -> None:
    """In Python < 3.12 an f-string is one token and its fields cannot hold the escapes a
    literal needs: refused with a way out, not a SyntaxError when the task runs. From 3.12 the
    field is code like any other."""
    if sys.version_info < (3, 12):
        with pytest.raises(TaskError, match="f-string"):
            placed(script, Context.PYTHON, {"v": "x"})
    else:
        assert "x" in run_py(placed(script, Context.PYTHON, {"v": "x"}))
    assert run_py(placed('print(f"{{${params.v}}}")', Context.PYTHON, {"v": "x"})) == "{x}\n"


@pytest.mark.parametrize("value", HOSTILE[:-1])
def test_url_is_percent_encoded(value: str) -> None:
    url = placed("https://h.invalid/a/${params.v}?q=${params.v}", Context.URL, {"v": value})
    path, _, query = url.partition("?q=")
    assert unquote(path.removeprefix("https://h.invalid/a/")) == value == unquote(query)
    assert url.count("/") == 4 and url.count("?") == 1 and not set(" \n\"'#&;") & set(url)


@pytest.mark.parametrize("value", [*HOSTILE[:-1], 3, None, ["a", 1]])
def test_json_body_gets_the_value_as_json(value: Any) -> None:
    body = placed('{"in": "x${params.v}", "as": ${params.v}}', Context.JSON, {"v": value})
    doc = json.loads(body)
    as_text = value if isinstance(value, str) else json.dumps(value)
    assert doc == {"in": "x" + as_text, "as": value}


def test_values_are_never_expanded_again() -> None:
    value = "${secret.api} #{nowInMillis()} ${params.v}"
    assert placed("${params.v}", Context.TEXT, {"v": value}) == value
    assert json.loads(placed('"${params.v}"', Context.JSON, {"v": value})) == value
    assert unquote(placed("${params.v}", Context.URL, {"v": value})) == value
