"""What every SQL adapter gives the statement mixins (shadow results, control state, SLO
series): its transactions and its dialect's upsert."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection, Table

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

    # Both have `.excluded` and `.on_conflict_do_update(index_elements=, set_=)`.
    Upsert = sqlite.Insert | postgresql.Insert

T = TypeVar("T")
Work = Callable[[Connection], T]


class SqlWork(ABC):
    """Transactions and the upsert spelling, supplied by each adapter."""

    @abstractmethod
    def _write(self, work: Work[T]) -> T:
        """Run `work` in one write transaction and commit; driver errors -> StoreUnavailable.
        May run `work` more than once when the database rolled the transaction back."""

    @abstractmethod
    def _read(self, work: Work[T]) -> T:
        """Run `work` in one read transaction (one consistent view)."""

    @abstractmethod
    def _upsert(self, table: Table) -> Upsert:
        """The dialect's INSERT ... ON CONFLICT construct for `table`."""
