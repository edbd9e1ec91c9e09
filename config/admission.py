"""Composed Redis scripts: several parts (quota, breakers, budgets...) admitted in one round trip.

A *part* is a Lua function `function(K, A)` over named keys and named arguments that returns `result, proceed`;
the parts of a composite run in order inside one script, and a part that does not proceed stops the ones after
it (a refused quota claims no breaker probe). Each part is declared once, by the app that owns its data, with
`register_part`:

    QUOTA = register_part("quota", lua=..., encode=lambda plan: ScriptInput(keys={...}, args={...}),
                          decode=lambda plan, raw: Reservation(...))

and the caller composes the registered parts and calls them with typed inputs, getting typed results back:

    ADMISSION = composite("quota", "breaker")
    answer = ADMISSION.run(QUOTA.bind(plan), BREAKERS.bind(request))
    reservation = answer[QUOTA]          # the quota part's decoded result (typed)
    codes = answer.get(BREAKERS)         # None when the part did not run (an earlier part stopped)

Keys: `ScriptInput.keys` maps a name to a key or to a list of keys; the part sees `K.<name>` (a string or a Lua
array of strings). Arguments: `ScriptInput.args` is a JSON object; the part sees `A.<name>` (cjson-decoded:
numbers are Lua numbers, lists are arrays, JSON null is `cjson.null`). A result is what Redis can return: integers
(Lua numbers are truncated), strings, arrays of them; `false`/nil end an array.

Redis Cluster: every key of one part must be in one hash slot (keys carry a `{...}` hash tag). On a cluster client
parts whose keys are in different slots run as consecutive script calls, in order, with the same stopping rule;
on one node (or Sentinel) the whole composite is one call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, NamedTuple, TypeVar

from redis.crc import key_slot

from config import jsonfast
from config.redis import redis_evalsha, redis_is_cluster, redis_script

In = TypeVar("In")  # a part's input type
Out = TypeVar("Out")  # a part's decoded result


_EMPTY: Mapping[str, Any] = MappingProxyType({})


class ScriptInput(NamedTuple):
    """What one part gets: named keys (a key or a list of keys) and named JSON arguments. (A NamedTuple: one is
    built per part per call.)"""

    keys: Mapping[str, str | Sequence[str]] = _EMPTY
    args: Mapping[str, Any] = _EMPTY

    def all_keys(self) -> list[str]:
        out: list[str] = []
        for value in self.keys.values():
            out.extend([value] if isinstance(value, str) else value)
        return out


@dataclass(frozen=True)
class Part(Generic[In, Out]):
    """One registered part: its Lua function body and how its typed input and result cross into Lua."""

    name: str
    lua: str  # `function(K, A) ... return result, proceed end`
    encode: Callable[[In], ScriptInput]
    decode: Callable[[In, Any], Out]

    def bind(self, value: In) -> Bound[In, Out]:
        return Bound(self, value)


class Bound(NamedTuple, Generic[In, Out]):
    """A part and its input, for one call (a NamedTuple: one is built per part per call)."""

    part: Part[In, Out]
    value: In


class Answer:
    """The decoded results of the parts that ran, by part."""

    def __init__(self, results: dict[str, Any]) -> None:
        self._results = results

    def __getitem__(self, part: Part[Any, Out]) -> Out:
        if part.name not in self._results:
            raise KeyError(f"part {part.name!r} did not run (an earlier part stopped the script)")
        result: Out = self._results[part.name]
        return result

    def get(self, part: Part[Any, Out]) -> Out | None:
        result: Out | None = self._results.get(part.name)
        return result

    def ran(self, part: Part[Any, Any]) -> bool:
        return part.name in self._results


_PARTS: dict[str, Part[Any, Any]] = {}
_NO_KEY = "atrium:admission:no-keys"


def register_part(name: str, *, lua: str, encode: Callable[[In], ScriptInput],
                  decode: Callable[[In, Any], Out]) -> Part[In, Out]:
    """Declare a part once (at import of the owning module); a second, different declaration is an error."""
    part: Part[In, Out] = Part(name=name, lua=lua.strip(), encode=encode, decode=decode)
    existing = _PARTS.get(name)
    if existing is not None and existing.lua != part.lua:
        raise ValueError(f"admission part {name!r} is already registered with another script")
    _PARTS[name] = part
    return part


def registered_parts() -> dict[str, Part[Any, Any]]:
    return dict(_PARTS)


# ARGV: number of parts in this call, then per part its index in the composite and its JSON spec
# {"k": {name: key index | [key indexes]}, "a": {...}}. Returns {results..., proceeded (0/1 for the last one run)}.
_RUNNER = """
local n = tonumber(ARGV[1])
local out = {}
local proceed = true
for i = 1, n do
  local part = PARTS[tonumber(ARGV[2 * i])]
  local spec = cjson.decode(ARGV[2 * i + 1])
  local K = {}
  for name, index in pairs(spec.k) do
    if type(index) == 'table' then
      local list = {}
      for j, x in ipairs(index) do list[j] = KEYS[x] end
      K[name] = list
    else
      K[name] = KEYS[index]
    end
  end
  local result
  result, proceed = part(K, spec.a)
  out[#out + 1] = result
  if not proceed then break end
end
out[#out + 1] = proceed and 1 or 0
return out
"""


class Composite:
    """Registered parts composed into one script, run in the given order."""

    def __init__(self, names: Sequence[str]) -> None:
        missing = [n for n in names if n not in _PARTS]
        if missing:
            raise KeyError(f"admission parts not registered: {missing} (import their modules first)")
        self.parts = [_PARTS[n] for n in names]
        self.names = [p.name for p in self.parts]
        self.order = {name: i for i, name in enumerate(self.names)}
        functions = "\n".join(f"PARTS[{i}] = {p.lua}" for i, p in enumerate(self.parts, start=1))
        self.source = f"local PARTS = {{}}\n{functions}\n{_RUNNER}"

    def run(self, *calls: Bound[Any, Any]) -> Answer:
        """Run the given parts (a subset of the composite, in its order) and decode their results. One round trip
        on one node; on Redis Cluster one per run of consecutive parts in the same hash slot."""
        order = self.order
        last = -1
        for bound in calls:
            position = order[bound.part.name]
            if position < last:
                raise ValueError(f"parts must be given in the composite's order {self.names}")
            last = position
        encoded = [(c, c.part.encode(c.value)) for c in calls]
        cluster = redis_is_cluster()
        groups = self._slot_groups(encoded) if cluster else [encoded]
        results: dict[str, Any] = {}
        for group in groups:
            raw, proceeded = self._call(group, order, cluster)
            for (bound, _spec), value in zip(group, raw, strict=False):
                results[bound.part.name] = bound.part.decode(bound.value, value)
            if not proceeded or len(raw) < len(group):
                break
        return Answer(results)

    @staticmethod
    def _slot_groups(encoded: list[tuple[Bound[Any, Any], ScriptInput]],
                     ) -> list[list[tuple[Bound[Any, Any], ScriptInput]]]:
        """Runs of consecutive parts whose keys are in one hash slot (a part without keys joins the run before)."""
        groups: list[list[tuple[Bound[Any, Any], ScriptInput]]] = []
        last_slot: int | None = None
        for item in encoded:
            slots = {key_slot(k.encode()) for k in item[1].all_keys()}
            if len(slots) > 1:
                raise ValueError(f"part {item[0].part.name!r}: its keys are in several hash slots {slots}; "
                                 f"give them one hash tag")
            slot = next(iter(slots)) if slots else last_slot
            if groups and slot == last_slot:
                groups[-1].append(item)
            else:
                groups.append([item])
            last_slot = slot
        return groups

    def _call(self, group: list[tuple[Bound[Any, Any], ScriptInput]],
              order: dict[str, int], cluster: bool) -> tuple[list[Any], bool]:
        keys: list[str] = []
        index: dict[str, int] = {}
        args: list[Any] = [len(group)]
        for bound, spec in group:
            named: dict[str, int | list[int]] = {}
            for name, value in spec.keys.items():
                if isinstance(value, str):
                    position = index.get(value)
                    if position is None:
                        keys.append(value)
                        position = index[value] = len(keys)
                    named[name] = position
                else:
                    positions: list[int] = []
                    for key in value:
                        position = index.get(key)
                        if position is None:
                            keys.append(key)
                            position = index[key] = len(keys)
                        positions.append(position)
                    named[name] = positions
            values = spec.args
            args += [order[bound.part.name] + 1,
                     jsonfast.dumps({"k": named, "a": values if type(values) is dict else dict(values)})]
        if not keys and cluster:
            keys.append(_NO_KEY)  # a cluster routes a script by its keys; this one is declared, never touched
        raw = list(redis_evalsha(redis_script(self.source), keys, args))
        proceeded = raw.pop()
        return raw, bool(int(proceeded))


_COMPOSITES: dict[tuple[str, ...], Composite] = {}


def composite(*names: str) -> Composite:
    """The composite of these registered parts, built once per process."""
    key = tuple(names)
    if key not in _COMPOSITES:
        _COMPOSITES[key] = Composite(names)
    return _COMPOSITES[key]
