"""The `data:` section: what validates, and how what does not is reported."""

from __future__ import annotations

import pytest

from strangler.config import parse_config
from strangler.errors import ConfigError

BASE = """\
backends:
  legacy: {url: "http://127.0.0.1:3000"}
  new: {url: "http://127.0.0.1:8080"}
routes:
  - {name: projects.index, match: "GET /projects"}
data:
  legacy: {url: "mysql://root@127.0.0.1:3306/legacy_db"}
  new: {url: "postgresql://127.0.0.1:5432/new_db"}
  tables:
    - name: projects
      key: id
      columns: {name: title, legacy_flags: "-"}
      transform:
        status: {map: {0: active, 1: archived}}
        budget: {decimal: 2}
      where: "deleted_at IS NULL"
      ignore: [lock_version]
      routes: ["projects.*"]
"""


def test_the_issue_example_loads_with_its_defaults() -> None:
    data = parse_config(BASE, "s.yaml").data
    assert data is not None
    assert (data.min_age_s, data.max_age_h, data.legacy_timezone) == (60.0, 24.0, "UTC")
    assert (data.watch.lag_s, data.watch.max_lag_s, data.watch.max_pending) == (5.0, 60.0, 100_000)
    table = data.tables[0]
    assert table.key == ["id"]
    assert table.new_name == "projects"
    assert table.new_column("name") == "title"
    assert table.new_column("legacy_flags") is None
    assert table.new_column("lock_version") is None
    assert table.new_column("budget") == "budget"
    assert table.transform["status"].map == {0: "active", 1: "archived"}


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ("mysql://root@127", "oracle://root@127", "data.legacy.url", "expected mysql://"),
        (
            'postgresql://127.0.0.1:5432/new_db"',
            'postgresql://u:hunter2@127.0.0.1:5432/"',
            "data.new.url",
            "u:***@",
        ),
        (
            "{decimal: 2}",
            "{decimal: 2, map: {1: a}}",
            "data.tables[0].transform.budget",
            "exactly one",
        ),
        (
            "{decimal: 2}",
            "{decimals: 2}",
            "data.tables[0].transform.budget.decimals",
            "did you mean `decimal`",
        ),
        ('["projects.*"]', '["users.*"]', "data.tables[0].routes[0]", "selects no route"),
        ('legacy_flags: "-"', 'legacy_flags: "a b"', "data.tables[0].columns", "not a column name"),
        ("key: id", "key: [id, lock_version]", "data.tables[0]", "cannot be left out"),
        ("- name: projects", "- name: 'projects; drop'", "data.tables[0].name", "should match"),
        ("ignore:", "ingore:", "data.tables[0].ingore", "did you mean `ignore`"),
        (
            "  tables:",
            "  watch: {lag_s: 10, max_lag_s: 5}\n  tables:",
            "data.watch",
            "at least lag_s",
        ),
        ("  tables:", "  watch: {max_pending: 1}\n  tables:", "data.watch.max_pending", "10"),
    ],
)
def test_problems_name_the_field(old: str, new: str, field: str, message: str) -> None:
    text = BASE.replace(old, new, 1)
    assert text != BASE
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "s.yaml")
    shown = str(caught.value)
    assert field in shown
    assert message in shown
    assert "hunter2" not in shown


def test_sqlite_urls_and_two_tables_of_one_name() -> None:
    text = BASE.replace("mysql://root@127.0.0.1:3306/legacy_db", "sqlite:///legacy.db")
    assert parse_config(text, "s.yaml").data is not None
    twice = text + "    - {name: projects, key: id}\n"
    with pytest.raises(ConfigError, match="given more than once"):
        parse_config(twice, "s.yaml")
