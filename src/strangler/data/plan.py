"""What one table's diff compares, read from both databases' schemas: the key, the column pairs,
and the SQL that spells each side's rows canonically.

Rules: every name in the config (key, `columns`, `transform`, `ignore`) must exist where it is
used, or the plan is refused with a message naming the name and the columns that do exist; a
legacy column the config says nothing about must exist on the new side under the same name.
Columns only the new table has are not compared (new schemas grow).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

from strangler.config import LEAVE_OUT, DataConfig, DataTableConfig
from strangler.data.dialects import Kind, Spelling
from strangler.data.engines import Database, DataSourceError, split_name
from strangler.errors import StranglerError

# The column Rails stamps on every write: rows younger than `min_age_s` by it are not judged.
AGE_COLUMN = "updated_at"
_OFFSET = re.compile(r"^[+-]\d\d:\d\d$")


class DataPlanError(StranglerError):
    """The config and a database's schema disagree (a typo, a missing table or column)."""


@dataclass(frozen=True, slots=True)
class SidePlan:
    """One side's SQL for one table; every fragment is quoted and ready to paste."""

    db: Database
    name: str  # as configured: `table` or `schema.table`
    table: str  # quoted
    where: str | None
    keys: tuple[str, ...]  # the key columns as selected (native values)
    key_cmps: tuple[str, ...]  # the key columns as compared and ordered
    values: tuple[str, ...]  # canonical text of each compared column, in `TablePlan.columns` order
    age: str | None  # canonical text of the age column, when the table has one
    row_hash: str  # a row's 60-bit hash over its canonical key and values

    def filters(self, *conditions: str) -> str:
        """A WHERE clause of `conditions` and the configured filter ("" when none)."""
        parts = [f"({self.where})"] if self.where else []
        parts.extend(condition for condition in conditions if condition)
        return f" WHERE {' AND '.join(parts)}" if parts else ""


@dataclass(frozen=True, slots=True)
class TablePlan:
    name: str
    key_names: tuple[str, ...]
    key_is_text: tuple[bool, ...]
    columns: tuple[str, ...]  # the legacy names of the compared columns
    legacy: SidePlan
    new: SidePlan

    @property
    def has_integer_key(self) -> bool:
        """One integer key column: segments are split by arithmetic on the key's range."""
        return len(self.key_is_text) == 1 and not self.key_is_text[0]

    def side(self, name: str) -> SidePlan:
        return self.legacy if name == "legacy" else self.new


def kind_of(column_type: Any, dialect: str) -> Kind:
    """The canonical spelling a reflected column type gets (see README, "Data parity")."""
    if isinstance(column_type, sqltypes.Boolean):
        return Kind.BOOLEAN
    # MySQL has no boolean: BOOLEAN is TINYINT(1), and Rails writes its booleans there.
    if isinstance(column_type, mysql.TINYINT) and column_type.display_width == 1:
        return Kind.BOOLEAN
    if isinstance(column_type, sqltypes.Integer):
        return Kind.INTEGER
    if isinstance(column_type, sqltypes.Float):
        return Kind.FLOAT
    if isinstance(column_type, sqltypes.Numeric):
        return Kind.DECIMAL
    if isinstance(column_type, sqltypes.DateTime):
        # MySQL TIMESTAMP stores an instant (read in the session's zone, UTC here).
        if getattr(column_type, "timezone", False) or (
            dialect == "mysql" and isinstance(column_type, sqltypes.TIMESTAMP)
        ):
            return Kind.TIMESTAMPTZ
        return Kind.TIMESTAMP
    if isinstance(column_type, sqltypes.Date):
        return Kind.DATE
    if isinstance(column_type, sqltypes.Time):
        return Kind.TIME
    if isinstance(column_type, sqltypes._Binary):
        return Kind.BINARY
    return Kind.TEXT


def _columns(db: Database, table: str) -> dict[str, Any]:
    schema, name = split_name(table)
    try:
        found = inspect(db.engine).get_columns(name, schema=schema)
    except NoSuchTableError:
        found = []
    except SQLAlchemyError as exc:
        raise db.error(exc) from exc
    if not found:
        raise DataPlanError(f"{db.side} database ({db.shown_url}) has no table {table!r}")
    return {str(column["name"]): column["type"] for column in found}


def _find(columns: Mapping[str, Any], name: str) -> str | None:
    """The column called `name`; case-insensitively when no column has exactly that name
    (MySQL column names are case-insensitive, PostgreSQL folds unquoted ones to lower case)."""
    if name in columns:
        return name
    folded = [column for column in columns if column.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


def build_plan(
    table: DataTableConfig, data: DataConfig, legacy: Database, new: Database
) -> TablePlan:
    """Reflect both tables and check the config against them; raises DataPlanError naming what
    does not exist, DataSourceError when a database can't be read."""
    legacy_columns = _columns(legacy, table.name)
    new_columns = _columns(new, table.new_name)

    def on_legacy(name: str, field: str) -> str:
        found = _find(legacy_columns, name)
        if found is None:
            raise DataPlanError(
                f"{field} names column {name!r}, which legacy table {table.name} does "
                f"not have (its columns: {', '.join(legacy_columns)})"
            )
        return found

    def on_new(name: str, field: str) -> str:
        found = _find(new_columns, name)
        if found is None:
            raise DataPlanError(
                f"{field} names column {name!r}, which new table {table.new_name} does "
                f"not have (its columns: {', '.join(new_columns)})"
            )
        return found

    # Keyed by the columns' own names, which may differ from the config's in case.
    renamed = {on_legacy(name, "columns"): new for name, new in table.columns.items()}
    transforms = {on_legacy(name, "transform"): t for name, t in table.transform.items()}
    for name in table.ignore:
        if _find(legacy_columns, name) is None and _find(new_columns, name) is None:
            raise DataPlanError(f"ignore names column {name!r}, which neither table has")
    ignored = {name.lower() for name in table.ignore}
    left_out = {name.lower() for name, new in renamed.items() if new == LEAVE_OUT}

    pairs: list[tuple[str, str]] = []
    keys = [on_legacy(name, "key") for name in table.key]
    new_keys = [on_new(renamed.get(name, name), "key") for name in keys]
    for name in legacy_columns:
        if name in keys or name.lower() in ignored or name.lower() in left_out:
            continue
        mapped = renamed.get(name, name)
        field = (
            f"columns ({name} -> {mapped})"
            if name in renamed
            else (f'legacy column {name} (map it in `columns:`, or leave it out with "-")')
        )
        pairs.append((name, on_new(mapped, field)))

    key_is_text: list[bool] = []
    for legacy_key, new_key in zip(keys, new_keys, strict=True):
        kinds = {
            kind_of(legacy_columns[legacy_key], legacy.dialect.name),
            kind_of(new_columns[new_key], new.dialect.name),
        }
        if kinds == {Kind.INTEGER}:
            key_is_text.append(False)
        elif kinds <= {Kind.TEXT}:
            key_is_text.append(True)
        else:
            raise DataPlanError(
                f"key column {legacy_key!r} is {'/'.join(sorted(k.value for k in kinds))}"
                " (a key must be integers or strings on both sides)"
            )
    _check_zone(legacy, data.legacy_timezone)
    printed = set()
    for legacy_name, new_name in pairs:
        scale = _fixed_scale(legacy_columns[legacy_name], legacy)
        is_alike = scale is not None and scale == _fixed_scale(new_columns[new_name], new)
        if is_alike and legacy_name not in transforms:
            printed.add(legacy_name)

    def side_plan(
        db: Database,
        name: str,
        columns: Mapping[str, Any],
        side_keys: Sequence[str],
        side_columns: Sequence[str],
        filter_sql: str | None,
        zone: str,
    ) -> SidePlan:
        def spelled(column: str, transform_of: str | None) -> str:
            column_type = columns[column]
            fsp = getattr(column_type, "fsp", None) if db.dialect.name == "mysql" else None
            spelling = Spelling(
                kind_of(column_type, db.dialect.name),
                zone=zone,
                fsp=fsp,
                is_printed_alike=transform_of in printed,
            )
            transform = transforms.get(transform_of) if transform_of else None
            if transform is not None:
                spelling = Spelling(
                    spelling.kind,
                    zone=zone,
                    fsp=fsp,
                    places=transform.decimal,
                    # A side whose column is a boolean already spells it canonically.
                    as_bool=bool(transform.bool) and spelling.kind is not Kind.BOOLEAN,
                    # Only the legacy side's values are mapped to the new side's.
                    mapping=(
                        {str(k): v for k, v in transform.map.items()}
                        if transform.map and db.side == "legacy"
                        else None
                    ),
                )
            return db.dialect.canon(db.quote(column), spelling)

        quoted_keys = tuple(db.quote(key) for key in side_keys)
        canon_keys = [
            spelled(key, None) if not is_text else db.dialect.canon(quoted, Spelling(Kind.TEXT))
            for key, quoted, is_text in zip(side_keys, quoted_keys, key_is_text, strict=True)
        ]
        values = tuple(
            spelled(column, legacy_name)
            for column, (legacy_name, _) in zip(side_columns, pairs, strict=True)
        )
        age_column = _find(columns, AGE_COLUMN)
        age = spelled(age_column, None) if age_column is not None else None
        return SidePlan(
            db=db,
            name=name,
            table=db.quote(name),
            where=filter_sql,
            keys=quoted_keys,
            key_cmps=tuple(
                db.dialect.key_cmp(quoted, is_text=is_text)
                for quoted, is_text in zip(quoted_keys, key_is_text, strict=True)
            ),
            values=values,
            age=age,
            row_hash=db.dialect.row_hash([*canon_keys, *values]),
        )

    legacy_zone = data.legacy_timezone
    if legacy.dialect.name == "postgresql" and _OFFSET.match(legacy_zone):
        # PostgreSQL reads a bare '+01:00' as a POSIX zone (east is negative); an interval
        # keeps the ISO 8601 sign.
        legacy_zone = f"INTERVAL:{legacy_zone}"
    return TablePlan(
        name=table.name,
        key_names=tuple(keys),
        key_is_text=tuple(key_is_text),
        columns=tuple(name for name, _ in pairs),
        legacy=side_plan(
            legacy, table.name, legacy_columns, keys, [n for n, _ in pairs], table.where,
            legacy_zone,
        ),
        new=side_plan(
            new, table.new_name, new_columns, new_keys, [n for _, n in pairs], table.new_where,
            "UTC",
        ),
    )  # fmt: skip


def _fixed_scale(column_type: Any, db: Database) -> int | None:
    """The scale of a DECIMAL/NUMERIC(p, s) column of MySQL or PostgreSQL, whose values both
    print with exactly s fraction digits: when both sides' scales are equal, that text is
    canonical as it is (trimming it costs a tenth of the row hash on MariaDB)."""
    if db.dialect.name not in ("mysql", "postgresql"):
        return None
    if kind_of(column_type, db.dialect.name) is not Kind.DECIMAL:
        return None
    scale = getattr(column_type, "scale", None)
    return scale if isinstance(scale, int) else None


def _check_zone(db: Database, zone: str) -> None:
    """MySQL converts named zones only with its time zone tables loaded (CONVERT_TZ is NULL
    otherwise, which would read every timestamp as NULL): refuse rather than compare NULLs."""
    if zone == "UTC" or db.dialect.name != "mysql" or _OFFSET.match(zone):
        return
    rows = db.fetch("SELECT CONVERT_TZ('2000-01-01 00:00:00', :zone, '+00:00')", {"zone": zone})
    if not rows or rows[0][0] is None:
        raise DataSourceError(
            f"legacy database ({db.shown_url}) does not know time zone {zone!r}: load its time "
            "zone tables (mysql_tzinfo_to_sql) or give legacy_timezone as an offset (+01:00)"
        )
