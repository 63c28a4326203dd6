"""Budget rules: which spend caps apply to a request, their counters and their error code.

Owns the meaning of a budget's scope, computed once per table build (never per request):

- `scope: {key: ID}` / `{user: ID}` / `{tag: T}` / `{model: GLOB}` / `global`: one shared counter
  for every request in that scope;
- a key that lists a budget (`budgets: [id]` in keys.yaml) adds its requests to that budget;
- no `scope` in the file (`listed`): the budget counts only the keys that list it (a pool shared
  by those keys; a budget no key lists applies to nothing, and loading warns about it).

A rule's ledger counter id carries a fingerprint of everything that decides which requests it
counts (period and scope, the listing keys), so a reload that changes them starts a fresh counter
that the ledger rebuilds from the journal, while a reload that changes only the limit keeps it.
Refusals are `key_limit_exceeded` for caps that belong to one key (scope key, or listed) and
`insufficient_credits` for shared ones (user, tag, model, global).
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal

from routerd.config.model import BudgetConfig, KeyConfig
from routerd.errors import ErrorCode
from routerd.metering.pricing import PICO_PER_USD


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """One budget as the request path and the ledger use it (integer pico-USD limit)."""

    config: BudgetConfig
    limit_pico: int
    counter: str
    listed_by: frozenset[str]
    model_pattern: re.Pattern[str] | None

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def error_code(self) -> ErrorCode:
        if self.config.scope.kind in ("key", "listed"):
            return ErrorCode.key_limit_exceeded
        return ErrorCode.insufficient_credits

    def counts(
        self, key_id: str | None, user: str | None, tags: Collection[str], model: str
    ) -> bool:
        """Whether a request (or journal record) with these fields is counted by this budget."""
        if key_id is not None and key_id in self.listed_by:
            return True
        scope = self.config.scope
        if scope.kind == "global":
            return True
        if scope.kind == "key":
            return key_id == scope.value
        if scope.kind == "user":
            return user is not None and user == scope.value
        if scope.kind == "tag":
            return scope.value in tags
        if scope.kind == "model":
            return self.model_pattern is not None and bool(self.model_pattern.match(model))
        return False


def usd_to_pico(usd: float) -> int:
    """A USD limit from the file as exact integer pico-USD (via its decimal spelling)."""
    return int(Decimal(str(usd)) * PICO_PER_USD)


def _fingerprint(budget: BudgetConfig, listed_by: frozenset[str]) -> str:
    text = repr((budget.period, budget.period_seconds, budget.scope, sorted(listed_by)))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def build_rules(
    budgets: Iterable[BudgetConfig], keys: Iterable[KeyConfig]
) -> dict[str, BudgetRule]:
    """Every budget's rule, keyed by budget id."""
    listing: dict[str, set[str]] = {}
    for key in keys:
        for budget_id in key.budgets:
            listing.setdefault(budget_id, set()).add(key.id)
    rules = {}
    for budget in budgets:
        listed_by = frozenset(listing.get(budget.id, ()))
        scope = budget.scope
        pattern = (
            re.compile(fnmatch.translate(scope.value))
            if scope.kind == "model" and scope.value
            else None
        )
        rules[budget.id] = BudgetRule(
            config=budget,
            limit_pico=usd_to_pico(budget.limit_usd),
            counter=f"budget:{budget.id}#{_fingerprint(budget, listed_by)}",
            listed_by=listed_by,
            model_pattern=pattern,
        )
    return rules


def key_rules(key: KeyConfig, rules: dict[str, BudgetRule]) -> tuple[BudgetRule, ...]:
    """The budgets that apply to every request of `key` whatever the model."""
    return tuple(
        rule
        for rule in rules.values()
        if key.id in rule.listed_by
        or (rule.config.scope.kind != "model" and rule.counts(key.id, key.user, key.tags, ""))
    )


def model_rules(model_id: str, rules: dict[str, BudgetRule]) -> tuple[BudgetRule, ...]:
    """The model-glob budgets that apply to every request answered by `model_id`."""
    return tuple(
        rule
        for rule in rules.values()
        if rule.config.scope.kind == "model" and rule.counts(None, None, (), model_id)
    )
