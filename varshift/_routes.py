"""Routes from noise layers to a BatchNormalization layer, on any graph of layer calls.

The walk both audits share (:func:`varshift.audit` on Keras' graph, :func:`varshift.torch.audit`
on ``torch.fx``'s): pure Python, it sees the graph only through the callables it is given, so
it runs without TensorFlow, JAX or PyTorch.

Example: ``noise -> dense -> bn`` is case (b), one weight layer between noise and BN:

>>> preds = {0: [], 1: [0], 2: [1]}  # call index -> the calls it reads
>>> walk = Walk(preds=preds.get, stops=lambda i: False, is_noise=lambda i: i == 0,
...             crossed=lambda i: int(i == 1), role=lambda i: None)
>>> best = upstream_routes(walk, 2)
>>> best[0].n_weight, best[0].weight, best[0].route, route_case(best[0], role=walk.role)
(1, 1, (0, 1, 2), 'b')
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Walk", "Route", "upstream_routes", "route_case"]


@dataclass(frozen=True)
class Walk:
    """What the walk needs to know about call ``i`` of a graph.

    Args:
        preds: ``preds(i)``: the calls whose outputs call ``i`` reads.
        stops: ``stops(i)``: a normalisation (the previous one ends the search).
        is_noise: ``is_noise(i)``: a noise layer's call.
        crossed: ``crossed(i)``: how many weight layers the call counts as (0: shape or
            element-wise).
        role: ``role(i)``: ``"merge"``, ``"pool"``, ``"concat"`` or ``None``.
        concat_channels: ``concat_channels(i, p)``: which channels of concatenation ``i``'s
            output come from call ``p`` (``"a:b of C"``, or ``"all"``).
    """

    preds: Callable
    stops: Callable
    is_noise: Callable
    crossed: Callable
    role: Callable
    concat_channels: Callable = lambda i, p: "all"


@dataclass(frozen=True)
class Route:
    """The best route from one noise call to the BN call: ``n_weight`` weight layers crossed,
    ``weight`` (the call of the single weight layer of case (b), else ``None``), ``route`` (call
    indices from the noise call to the BN call), ``through`` (the first merge or pooling call on
    the way, or ``None``) and ``channels`` (the BN input channels the noise reaches)."""

    n_weight: int
    weight: int | None
    route: tuple
    through: int | None
    channels: str


def upstream_routes(walk: Walk, bn: int) -> dict:
    """Breadth-first walk upstream from BN call ``bn``: ``{noise call: Route}``, per noise call
    the route with the fewest weight layers (then one not through a merge or pooling)."""
    best, visited = {}, set()
    queue = collections.deque((p, 0, None, (bn,), None, "all") for p in walk.preds(bn))
    while queue:
        i, n_weight, weight, route, through, channels = queue.popleft()
        if walk.stops(i):
            continue  # the previous normalisation ends the search
        key = (i, min(n_weight, 2), through is not None, channels)
        if key in visited:
            continue
        visited.add(key)
        route = (i, *route)
        if walk.is_noise(i):
            found = Route(n_weight, weight, route, through, channels)
            if i not in best or (n_weight, through is not None) < (
                    best[i].n_weight, best[i].through is not None):
                best[i] = found
        crossed = walk.crossed(i)
        if crossed:
            weight = i if n_weight == 0 and crossed == 1 else None
            n_weight += crossed
        role = walk.role(i)
        if role in ("merge", "pool") and through is None:
            through = i
        for p in walk.preds(i):
            ch = walk.concat_channels(i, p) if role == "concat" and channels == "all" \
                else channels
            queue.append((p, n_weight, weight, route, through, ch))
    return best


def route_case(found: Route, *, role) -> str:
    """The paper's case of a route: ``"a"`` (no weight layer), ``"b"`` (one), ``"deeper"``
    (two or more), or the role (``"merge"``, ``"pool"``) of the call it passes through."""
    case = "a" if found.n_weight == 0 else ("b" if found.n_weight == 1 else "deeper")
    if found.through is not None and case != "deeper":
        case = role(found.through)
    return case
