"""Budget rules: which spend caps apply to a request, their counters and their error code.

Owns the meaning of a budget's scope, computed once per table build (never per request):

- `scope: {key: ID}` / `{user: ID}` / `{tag: T}` / `{model: GLOB}` / `global`: one shared counter
  for every request in that scope;
- a key that lists a budget (`budgets: [id]` in keys.yaml) adds its requests to that budget;
- no `scope` in the file (`listed`): the budget counts only the keys that list it (a pool shared
  by those keys; a budget no key lists applies to nothing, and loading warns about it);
- a user's `budget_id` (users.yaml, any-llm's template budgets; scope `per_user` marks budgets
  meant only for that): the user gets an instance of its own, `ID@user:USER`, with the same limit
  and period, counting that user's requests.

A rule's ledger counter id carries a fingerprint of everything that decides which requests it
counts (period and scope, the listing keys), so a reload that changes them starts a fresh counter
that the ledger rebuilds from the journal, while a reload that changes only the limit keeps it.
Refusals are `key_limit_exceeded` for caps that belong to one key (scope key, or listed) and
`insufficient_credits` for shared ones (user, tag, model, global).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal

from routerd.config.model import BudgetConfig, BudgetScope, KeyConfig, UserConfig
from routerd.errors import ErrorCode
from routerd.metering.pricing import PICO_PER_USD


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """One budget as the request path and the ledger use it (integer pico-USD limit)."""

    id: str  # the budget id; `ID@user:USER` for a user's instance of a template budget
    config: BudgetConfig
    limit_pico: int
    counter: str
    listed_by: frozenset[str]
    model_pattern: re.Pattern[str] | None

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
        return False  # listed (only keys that list it) and per_user (only its user instances)


def usd_to_pico(usd: float) -> int:
    """A USD limit from the file as exact integer pico-USD (via its decimal spelling)."""
    return int(Decimal(str(usd)) * PICO_PER_USD)


def _fingerprint(budget: BudgetConfig, listed_by: frozenset[str]) -> str:
    text = repr((budget.period, budget.period_seconds, budget.scope, sorted(listed_by)))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def build_rules(
    budgets: Iterable[BudgetConfig],
    keys: Iterable[KeyConfig],
    users: Iterable[UserConfig] = (),
) -> dict[str, BudgetRule]:
    """Every budget's rule, keyed by rule id, and each user's instance of its `budget_id`."""
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
            id=budget.id,
            config=budget,
            limit_pico=usd_to_pico(budget.limit_usd),
            counter=f"budget:{budget.id}#{_fingerprint(budget, listed_by)}",
            listed_by=listed_by,
            model_pattern=pattern,
        )
    for user in users:
        base = rules.get(user.budget_id or "")
        if base is not None:
            rule = user_instance(base, user.id)
            rules[rule.id] = rule
    return rules


def user_instance(base: BudgetRule, user_id: str) -> BudgetRule:
    """A user's own copy of a budget named by its `budget_id` (any-llm's template budgets):
    the same limit and period, counting only that user's requests, in a counter of its own."""
    config = dataclasses.replace(base.config, scope=BudgetScope("user", user_id))
    return BudgetRule(
        id=f"{base.id}@user:{user_id}",
        config=config,
        limit_pico=base.limit_pico,
        counter=f"budget:{base.id}@user:{user_id}#{_fingerprint(config, frozenset())}",
        listed_by=frozenset(),
        model_pattern=None,
    )


class RuleIndex:
    """The budgets of one table by what they are scoped to, so finding a key's budgets costs
    a few dict lookups, not a pass over every budget (10,000 keys with a budget each)."""

    def __init__(self, rules: dict[str, BudgetRule]) -> None:
        self.everyone: list[BudgetRule] = []
        self.by_scope: dict[tuple[str, str | None], list[BudgetRule]] = {}
        self.by_listing_key: dict[str, list[BudgetRule]] = {}
        for rule in rules.values():
            scope = rule.config.scope
            if scope.kind == "global":
                self.everyone.append(rule)
            elif scope.kind in ("key", "user", "tag"):
                self.by_scope.setdefault((scope.kind, scope.value), []).append(rule)
            for key_id in rule.listed_by:
                self.by_listing_key.setdefault(key_id, []).append(rule)

    def for_key(self, key: KeyConfig) -> tuple[BudgetRule, ...]:
        """The budgets that apply to every request of `key` whatever the model."""
        found = [*self.everyone, *self.by_scope.get(("key", key.id), ())]
        if key.user is not None:
            found += self.by_scope.get(("user", key.user), ())
        for tag in key.tags:
            found += self.by_scope.get(("tag", tag), ())
        found += self.by_listing_key.get(key.id, ())
        return tuple({rule.id: rule for rule in found}.values())


def model_rules(model_id: str, rules: dict[str, BudgetRule]) -> tuple[BudgetRule, ...]:
    """The model-glob budgets that apply to every request answered by `model_id`."""
    return tuple(
        rule
        for rule in rules.values()
        if rule.config.scope.kind == "model" and rule.counts(None, None, (), model_id)
    )
