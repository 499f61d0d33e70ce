"""Placeholder resolution: params, connections and secrets first, then #{date functions}."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kiok.core.placeholders import param_env, param_values, references, resolve
from kiok.errors import TaskError

NOW = datetime(2024, 1, 31, 13, 5, 7, 123_000, tzinfo=UTC)  # a Wednesday
NOW_MS = 1_706_706_307_123
CONNS = {("api", "user"): "bob", ("api_token", "value"): "s3cr3t", ("s3", "fs.s3a.key"): "AK"}


def _lookup(conn_id: str, key: str) -> str:
    return CONNS[(conn_id, key)]


def r(text: str, *, params: Mapping[str, object] | None = None, tz: str = "UTC", now_ms: int = NOW_MS) -> str:
    return resolve(text, params=params or {}, lookup_conn=_lookup, now_ms=now_ms, tz=tz)


def _ms(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def test_fixed_now() -> None:
    assert _ms(NOW) == NOW_MS


def test_params_and_trigger_args_override_defaults() -> None:
    params = param_values({"region": "eu", "n": 1}, {"region": "us"}, now_ms=NOW_MS)
    assert params == {"region": "us", "n": 1}
    assert (
        r("go ${params.region} ${params.n} ${params.flag}", params={**params, "flag": True}) == "go us 1 true"
    )
    assert param_values({"a": 1}, None, now_ms=NOW_MS) == {"a": 1}


def test_defaults_whose_date_functions_grow_past_the_bounds_fail_in_words() -> None:
    """The re-probe of session 29: a default of 65,419 bytes, ``#{nowFormatted('ZaZa...')}``,
    became 228,900 ('Z' is '+0000', 'a' 'AM'): past Linux's 128 KiB for one variable, its
    shell and cold python tasks could not start ("Argument list too long")."""
    grows = "#{nowFormatted('" + "Za" * 32_700 + "')}"
    with pytest.raises(TaskError, match=r"^param 'p': its default is 228900 bytes once its date functions"):
        param_values({"p": grows}, None, now_ms=NOW_MS)
    assert param_values({"p": grows}, {"p": "given"}, now_ms=NOW_MS) == {"p": "given"}  # not evaluated
    each = "#{nowFormatted('" + "Za" * 5_000 + "')}"  # 35,000 bytes evaluated, 8 of them 280,000
    with pytest.raises(TaskError, match=r"^the DAG's param defaults come to more than 262144 bytes"):
        param_values({f"p{i}": each for i in range(8)}, None, now_ms=NOW_MS)
    assert len(param_values({f"p{i}": each for i in range(7)}, None, now_ms=NOW_MS)) == 7


def test_conn_and_secret() -> None:
    assert r("u=${conn.api.user} t=${secret.api_token} k=${conn.s3.fs.s3a.key}") == "u=bob t=s3cr3t k=AK"


def test_other_dollar_braces_are_left_for_the_shell() -> None:
    assert r('echo "${HOME}" ${PATH:-x} $params') == 'echo "${HOME}" ${PATH:-x} $params'


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("#{nowInMillis()}", str(NOW_MS)),
        ("#{ nowInMillis( ) }", str(NOW_MS)),
        ("#{nowFormatted('yyyy-MM-dd HH:mm:ss.SSS')}", "2024-01-31 13:05:07.123"),
        (
            '#{nowFormatted("EEE EEEE MMM MMMM M d D yy hh h a")}',
            "Wed Wednesday Jan January 1 31 31 24 01 1 PM",
        ),
        ("#{nowFormatted(\"yyyy-MM-dd'T'HH:mm:ssX\")}", "2024-01-31T13:05:07Z"),
        ("#{nowFormatted('yyyy''T''HH')}", "2024T13"),
        ("#{nowFormatted('YYYY-MM')}", "2024-01"),
        ("#{nowFormatted(\"'o''clock' H\")}", "o'clock 13"),
        ("#{nowPlusInMillis(0,1,0,0,0,0)}", str(_ms(datetime(2024, 2, 29, 13, 5, 7, 123_000, tzinfo=UTC)))),
        ("#{nowPlusFormatted(1,1,1,1,1,1,'yyyy-MM-dd HH:mm')}", "2025-03-08 14:06"),
        ("#{nowPlusFormatted(0,0,0,0,-6,0,'HH:mm')}", "12:59"),
        ("#{nowMinusInMillis(0,0,1,0,0,0)}", str(NOW_MS - 86_400_000)),
        ("#{nowMinusFormatted(0,2,0,0,0,0,'yyyy-MM-dd')}", "2023-11-30"),
        ('#{nowMinusFormatted(0,0,0,0,0,1,"dd/MM/yy")}', "24/01/24"),
        ("#{nowMinusFormatted(1,0,0,0,0,0,'yyyy-MM-dd')}", "2023-01-31"),
    ],
)
def test_date_functions(expr: str, expected: str) -> None:
    assert r(expr) == expected


def test_month_arithmetic_is_calendar_correct() -> None:
    jan31 = _ms(datetime(2023, 1, 31, tzinfo=UTC))
    assert r("#{nowPlusFormatted(0,1,0,0,0,0,'yyyy-MM-dd')}", now_ms=jan31) == "2023-02-28"
    leap = _ms(datetime(2024, 2, 29, tzinfo=UTC))
    assert r("#{nowPlusFormatted(1,0,0,0,0,0,'yyyy-MM-dd')}", now_ms=leap) == "2025-02-28"
    mar31 = _ms(datetime(2024, 3, 31, tzinfo=UTC))
    assert r("#{nowMinusFormatted(0,1,0,0,0,0,'yyyy-MM-dd')}", now_ms=mar31) == "2024-02-29"


def test_time_zone_and_dst() -> None:
    assert r("#{nowFormatted('yyyy-MM-dd HH:mm XXX')}", tz="Asia/Seoul") == "2024-01-31 22:05 +09:00"
    berlin = ZoneInfo("Europe/Berlin")
    noon = _ms(datetime(2024, 3, 30, 12, 0, tzinfo=berlin))  # the day before spring-forward
    fmt = "'yyyy-MM-dd HH:mm XXX'"
    assert (
        r(f"#{{nowPlusFormatted(0,0,1,0,0,0,{fmt})}}", tz="Europe/Berlin", now_ms=noon)
        == "2024-03-31 12:00 +02:00"
    )
    assert (
        r(f"#{{nowPlusFormatted(0,0,0,24,0,0,{fmt})}}", tz="Europe/Berlin", now_ms=noon)
        == "2024-03-31 13:00 +02:00"
    )
    assert r("#{nowPlusInMillis(0,0,1,0,0,0)}", tz="Europe/Berlin", now_ms=noon) == str(noon + 23 * 3_600_000)


def test_secret_values_are_never_re_expanded() -> None:
    CONNS[("tricky", "value")] = "#{nowInMillis()} ${params.x} #{bogus("
    try:
        assert r("${secret.tricky}", params={"x": "X"}) == "#{nowInMillis()} ${params.x} #{bogus("
        assert r("#{nowFormatted('${secret.tricky}')}") == "#{nowInMillis()} ${params.x} #{bogus("
    finally:
        del CONNS[("tricky", "value")]


def test_dag_defaults_may_hold_dates_but_args_and_references_stay_as_given() -> None:
    defaults = {"day": "#{nowMinusFormatted(0,0,1,0,0,0,'yyyy-MM-dd')}", "leak": "${secret.api_token}"}
    params = param_values(defaults, None, now_ms=NOW_MS)
    assert r("${params.day} ${params.leak}", params=params) == "2024-01-30 ${secret.api_token}"
    args = param_values(defaults, {"day": "#{nowInMillis()}"}, now_ms=NOW_MS)
    assert r("${params.day}", params=args) == "#{nowInMillis()}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${params.nope}", "unknown param 'nope'"),
        ("${params.}", "invalid placeholder ${params.}"),
        ("${conn.api.missing}", "connection 'api', key 'missing'"),
        ("${conn.ghost.user}", "connection 'ghost'"),
        ("${secret.ghost}", "connection 'ghost', key 'value'"),
        ("${conn.api}", "invalid placeholder ${conn.api}: use ${conn.<id>.<key>}"),
        ("${secret.}", "invalid placeholder ${secret.}"),
        ("#{nowish()}", "unknown date function 'nowish'"),
        ("#{nowFormatted()}", "nowFormatted takes 1 argument (format), got 0"),
        ("#{nowPlusInMillis(1,2,3)}", "nowPlusInMillis takes 6 arguments"),
        ("#{nowMinusFormatted(0,0,0,0,0,0,5)}", "argument format must be a quoted string"),
        ("#{nowPlusInMillis(0,0,'1',0,0,0)}", "argument days must be an integer"),
        ("#{nowFormatted('yyyy-qq')}", "unsupported letter 'qq'"),
        ("#{nowFormatted('yyyy 'T)}", "cannot parse the arguments"),
        ("#{nowFormatted('''T')}", "unterminated quote"),
        ("#{nowInMillis()", "unterminated date placeholder"),
        ("#{just text}", "invalid date placeholder"),
        ("#{nowPlusInMillis(0,0,0,0,0,0,)}", "cannot parse the arguments"),
    ],
)
def test_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(TaskError) as e:
        r(text)
    assert message in str(e.value)


def test_no_connections_available() -> None:
    with pytest.raises(TaskError, match="no connections are available"):
        resolve("${secret.x}", params={}, lookup_conn=None, now_ms=0)


def test_bad_time_zone() -> None:
    with pytest.raises(TaskError, match="Mars/Olympus"):
        r("#{nowFormatted('yyyy')}", tz="Mars/Olympus")


def test_text_without_placeholders_comes_back_as_is() -> None:
    text = "echo $HOME #not-a-date {}"
    assert r(text, tz="Mars/Olympus") is text  # nothing to resolve, so the zone is not needed


def test_errors_do_not_echo_secret_values() -> None:
    with pytest.raises(TaskError) as e:
        r("#{nowPlusInMillis(${secret.api_token},0,0,0,0,0)}")
    assert "s3cr3t" not in str(e.value)


def test_references() -> None:
    text = "${conn.api.user} ${secret.api_token} ${conn.s3.fs.s3a.key} ${params.x} ${conn.bad} ${HOME}"
    assert references(text) == {("api", "user"), ("api_token", "value"), ("s3", "fs.s3a.key")}
    assert references("nothing here") == set()


def test_param_env() -> None:
    env = param_env({"region": "eu", "max-rows": 10, "a.b c": True, "obj": {"k": [1]}})
    assert env == {
        "KIOK_PARAM_REGION": "eu",
        "KIOK_PARAM_MAX_ROWS": "10",
        "KIOK_PARAM_A_B_C": "true",
        "KIOK_PARAM_OBJ": '{"k": [1]}',
    }


def test_text_without_placeholders_is_unchanged() -> None:
    text = "plain # { } $ {} #x ${ }"
    assert r(text) == text
