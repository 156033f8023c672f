"""Single-site trace Metropolis–Hastings on the latent sites of a NumPyro model.

The position is the model's trace restricted to its latent sample sites: a dict
``{site name: constrained value}``, discrete sites included (NumPyro's gradient-based kernels cannot
move those). Each step picks one site uniformly at random, proposes a new value for it, re-runs the
model with the other sites substituted *by name*, and accepts with the Metropolis–Hastings ratio of
the whole trace (research note ``qbs_smc_mhg.md`` §1.5, trace MH). The model must have a fixed
structure: the same sites with the same shapes whatever the values, as jit-compiled code needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import MaskedDistribution, constraints
from numpyro.infer.util import compute_log_probs

from probkit._errors import ProbkitError
from probkit._validate import check_choice
from probkit.inference.mhg.base import AcceptanceRule, MHState, accept_or_reject, checked_init

__all__ = ["SingleSiteInfo", "SingleSiteKernel", "single_site_mh"]

# How many prior draws `initial_position` makes, at most, to find a trace of positive density.
_MAX_INITIAL_DRAWS = 100

_STRUCTURE_HINT = (
    "single_site_mh needs a model with a fixed structure: the same latent sites with the same "
    "shapes whatever values they take. Replace Python control flow on sampled values by "
    "jnp.where or lax.cond, and give every site a fixed shape."
)


class SingleSiteInfo(NamedTuple):
    """What one single-site step did.

    Attributes
    ----------
    acceptance_probability : Array, shape ()
        The probability with which the proposal was accepted (0 when its target density is 0).
    is_accepted : Array, shape ()
        Whether it was.
    proposal : dict
        The proposed position (all latent sites, one of them changed).
    site_index : Array, shape ()
        The index in ``kernel.sites`` of the site that was proposed.
    """

    acceptance_probability: jax.Array
    is_accepted: jax.Array
    proposal: Any
    site_index: jax.Array


class SingleSiteKernel(NamedTuple):
    """A single-site trace MH kernel, with the pieces it is made of.

    Attributes
    ----------
    init : Callable[[dict], MHState]
        ``init(position)``: the state at a position ``{site: constrained value}`` of all latent
        sites; its ``log_density`` is the model's log joint density (observations included).
    step : Callable[[jax.Array, MHState], tuple[MHState, SingleSiteInfo]]
        One transition: pick a site, draw a value, :attr:`propose`, accept or reject.
    propose : Callable[[dict, int | str, jax.Array], tuple[MHState, jax.Array]]
        ``propose(position, site, new_value) -> (proposal, log_ratio)``: the state with ``site``
        (an index into :attr:`sites` or a name, static) set to ``new_value`` and the log MH ratio
        of that move. Pure; :attr:`step` uses exactly this function.
    initial_position : Callable[[jax.Array], dict]
        ``initial_position(key)``: a prior draw of the latent sites with positive density.
    sites : tuple of str
        The latent sites, in the model's order.
    """

    init: Callable[[Any], MHState]
    step: Callable[[jax.Array, MHState], tuple[MHState, SingleSiteInfo]]
    propose: Callable[[Any, Any, jax.Array], tuple[MHState, jax.Array]]
    initial_position: Callable[[jax.Array], dict]
    sites: tuple[str, ...]


def _is_latent(site: dict) -> bool:
    return (
        site["type"] == "sample"
        and not site["is_observed"]
        and not site["infer"].get("is_auxiliary", False)
    )


def _in_support(site: dict) -> jax.Array:
    """Whether a sample site's value lies in its distribution's support (masked parts pass).

    NumPyro's ``log_prob`` need not check the support (it does not when validation is off), and
    a finite density at an impossible value is the trace-MH bug of monad-bayes PR #6 (research
    note §1.5): a child whose support moved with its parent must make the proposal impossible.
    A support NumPyro does not express (``constraints.dependent``) cannot be checked and passes.
    """
    fn = site["fn"]
    if constraints.is_dependent(fn.support):
        return jnp.asarray(True)
    inside = fn.support(site["value"])
    if isinstance(fn, MaskedDistribution) and fn._mask is not True:
        inside = jnp.logical_or(inside, jnp.logical_not(fn._mask))
    return jnp.all(inside)


def _same_kind(a: Any, b: Any) -> bool:
    kinds = [
        "b" if jnp.issubdtype(x, jnp.bool_) else "i" if jnp.issubdtype(x, jnp.integer) else "f"
        for x in (a, b)
    ]
    return kinds[0] == kinds[1]


def _check_proposals(proposals: Any, sites: tuple[str, ...]) -> dict:
    if proposals is None:
        return {}
    if not isinstance(proposals, Mapping):
        raise ProbkitError(
            f"`proposals` must be a dict {{site name: (sample_fn, log_density_fn)}}; got "
            f"{type(proposals).__name__}."
        )
    checked = {}
    for name, pair in proposals.items():
        if name not in sites:
            raise ProbkitError(
                f"`proposals` names {name!r}, which is not a latent sample site of the model; "
                f"the latent sites are {', '.join(map(repr, sites))}."
            )
        if (
            not isinstance(pair, tuple | list)
            or len(pair) != 2
            or not callable(pair[0])
            or not (pair[1] is None or callable(pair[1]))
        ):
            raise ProbkitError(
                f"`proposals[{name!r}]` must be a pair (sample_fn, log_density_fn): "
                "sample_fn(key, value) -> new value, and log_density_fn(to, from) = log q(to | "
                f"from), or None for a symmetric proposal; got {pair!r}."
            )
        checked[name] = (pair[0], pair[1])
    return checked


def _abstract_run(function: Callable, *args: Any) -> Any:
    """``jax.eval_shape(function, *args)``, refusing a model whose structure depends on values."""
    try:
        return jax.eval_shape(function, *args)
    except (
        jax.errors.ConcretizationTypeError,
        jax.errors.TracerIntegerConversionError,
        jax.errors.TracerArrayConversionError,
    ) as error:
        raise ProbkitError(
            f"`model` branches on a sampled value in Python. {_STRUCTURE_HINT}"
        ) from error


def single_site_mh(
    model: Callable,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    *,
    proposals: Mapping[str, tuple[Callable, Callable | None]] | None = None,
    rule: AcceptanceRule = "metropolis",
) -> SingleSiteKernel:
    """Single-site Metropolis–Hastings on the latent sites of a NumPyro model.

    Parameters
    ----------
    model : callable
        A NumPyro model with a fixed structure; observed sites are fixed by ``obs=``.
    model_args, model_kwargs
        Its arguments (the data, typically).
    proposals : dict, optional
        ``{site name: (sample_fn, log_density_fn)}`` replacing the default proposal of those
        sites: ``sample_fn(key, value) -> new value`` (same shape) and
        ``log_density_fn(to, from) = log q(to | from)``, or ``None`` for a symmetric proposal.
        Proposed values outside the site's support are rejected.
    rule : {"metropolis", "barker"}
        The acceptance rule.

    Returns
    -------
    SingleSiteKernel
        ``init``, ``step``, ``propose``, ``initial_position`` and ``sites``. Positions are dicts
        ``{site: constrained value}`` of all latent sites; states cache the log joint density.

    Raises
    ------
    ProbkitError
        If the model has no latent site, its structure depends on sampled values (Python
        control flow on them, found by an abstract run of the model), it subsamples a plate,
        ``proposals``
        names an unknown site or is not a pair of callables, or a proposal returns a value of
        another shape or kind (integer vs float) than the site's.

    Notes
    -----
    A step picks site ``i`` with probability ``1/n`` (so the choice cancels in the ratio) and
    proposes ``x'`` equal to ``x`` except at ``i``.

    - Default proposal: ``x'_i`` drawn from the site's own distribution given the current values
      of the sites before it, ``p_i(· | pa)``. Its parents do not change, so
      ``ρ = [p(x') / p(x)] · [p_i(x_i | pa) / p_i(x'_i | pa)]``: the site's own factor cancels
      and only the factors of the *other* sites (its children and the observations) remain
      (under ``numpyro.handlers.scale`` with factor ``s`` the site's ``p_i^(s-1)`` remains).
    - User proposal ``q``: ``ρ = [p(x') / p(x)] · [q(x_i | x'_i) / q(x'_i | x_i)]``.

    ``p`` is the model's joint density (``scale`` and masks as NumPyro applies them); it is 0,
    and the proposal rejected, when any site's value leaves its support, because NumPyro's
    densities need not check that (research note §1.5, monad-bayes PR #6).

    Each step runs the model about three times (current trace for the default proposal's
    distribution, current and proposed traces in ``propose``; XLA shares the identical ones).
    Under ``jax.vmap`` over chains the random site choice becomes a select that evaluates every
    site's branch, so a vmapped step costs ``n`` times a single one.

    Works in float32 and float64: log densities use the default float type.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from probkit.inference.mhg.trace import single_site_mh
    >>> def model():
    ...     z = numpyro.sample("z", dist.Bernoulli(0.3))
    ...     numpyro.sample("y", dist.Normal(2.0 * z, 1.0), obs=1.5)
    >>> kernel = single_site_mh(model)
    >>> state = kernel.init(kernel.initial_position(jax.random.key(0)))
    >>> state, info = jax.jit(kernel.step)(jax.random.key(1), state)
    """
    if not callable(model):
        raise ProbkitError(f"`model` must be a NumPyro model (a callable); got {model!r}.")
    if not isinstance(model_args, tuple):
        raise ProbkitError(
            f"`model_args` must be a tuple of the model's positional arguments; got "
            f"{type(model_args).__name__}. Write model_args=(y,) for one argument."
        )
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        raise ProbkitError(
            f"`model_kwargs` must be a dict of keyword arguments; got {type(model_kwargs).__name__}."
        )
    check_choice("rule", rule, ("metropolis", "barker"))
    model_kwargs = dict(model_kwargs or {})

    def prior_trace(key: jax.Array) -> dict:
        return handlers.trace(handlers.seed(model, rng_seed=key)).get_trace(
            *model_args, **model_kwargs
        )

    # The model's structure from an abstract run (nothing is computed): site names, shapes and
    # dtypes are static, and Python control flow on a sampled value fails here, not later.
    structure: dict = {}

    def record_structure(key: jax.Array) -> None:
        structure.update(prior_trace(key))

    _abstract_run(record_structure, jax.random.key(0))
    sites = tuple(name for name, site in structure.items() if _is_latent(site))
    if not sites:
        raise ProbkitError(
            "`model` has no latent sample site (every site is observed or deterministic): "
            "there is nothing to sample. Leave at least one site without obs=."
        )
    for name, site in structure.items():
        if site["type"] == "plate" and site["args"][1] not in (None, site["args"][0]):
            raise ProbkitError(
                f"`model` subsamples plate {name!r} (size {site['args'][0]}, subsample_size "
                f"{site['args'][1]}): a random subsample makes the target itself random. "
                "Use the full plate."
            )
    shapes = {name: tuple(jnp.shape(structure[name]["value"])) for name in sites}
    dtypes = {name: jnp.result_type(structure[name]["value"]) for name in sites}
    sample_shapes = {name: structure[name]["kwargs"].get("sample_shape", ()) for name in sites}
    scaled = {name: structure[name]["scale"] is not None for name in sites}
    proposals = _check_proposals(proposals, sites)

    def run_model(position: dict) -> tuple[dict, dict]:
        # The other sites are reused *by name*; the seed only serves sites the model samples
        # that are not latent sites of ours (there are none once `position` is complete).
        return compute_log_probs(
            handlers.seed(model, rng_seed=0), model_args, model_kwargs, position
        )

    def log_joint_by_site(position: dict) -> tuple[dict, jax.Array]:
        """Per-site log densities and whether every site value is in its support."""
        log_probs, inside, _ = evaluate(position)
        return log_probs, inside

    def evaluate(position: dict) -> tuple[dict, jax.Array, dict]:
        log_probs, trace = run_model(position)
        inside = jnp.all(
            jnp.stack([_in_support(site) for site in trace.values() if site["type"] == "sample"])
        )
        dtype = jnp.result_type(float)
        return {name: jnp.asarray(value, dtype) for name, value in log_probs.items()}, inside, trace

    def unscaled_log_prob(trace: dict, name: str) -> jax.Array:
        site = trace[name]
        return jnp.asarray(jnp.sum(site["fn"].log_prob(site["value"])), jnp.result_type(float))

    def total(log_probs: dict, inside: jax.Array, exclude: str | None = None) -> jax.Array:
        dtype = jnp.result_type(float)
        value = sum(
            (lp for name, lp in log_probs.items() if name != exclude), start=jnp.zeros((), dtype)
        )
        return jnp.where(inside, value, -jnp.inf)

    # Compiled once per kernel: an eager `init` (outside jit) then costs one call, not one
    # dispatch per operation of the model; inside jit or vmap it is inlined.
    log_joint = jax.jit(lambda position: total(*log_joint_by_site(position)))

    def site_index(site: Any) -> int:
        if isinstance(site, str):
            if site not in sites:
                raise ProbkitError(
                    f"`site` {site!r} is not a latent site; they are {', '.join(map(repr, sites))}."
                )
            return sites.index(site)
        if isinstance(site, int | np.integer) and 0 <= site < len(sites):
            return int(site)
        raise ProbkitError(
            f"`site` must be a latent site's name or an index in [0, {len(sites)}); got {site!r}."
        )

    def propose(position: dict, site: Any, new_value: jax.Array) -> tuple[MHState, jax.Array]:
        name = sites[site_index(site)]
        current = position[name]
        proposed = dict(position)
        proposed[name] = jnp.asarray(new_value).astype(jnp.result_type(current))
        new_log_probs, new_inside, new_trace = evaluate(proposed)
        old_log_probs, old_inside, old_trace = evaluate(position)
        log_density = total(new_log_probs, new_inside)
        if name in proposals:
            # Density form (research note §1.5): ρ = π(x') q(x | x') / (π(x) q(x' | x)).
            log_ratio = log_density - total(old_log_probs, old_inside)
            log_q = proposals[name][1]
            if log_q is not None:
                log_ratio = (
                    log_ratio + log_q(current, proposed[name]) - log_q(proposed[name], current)
                )
        else:
            # Prior proposal q = p_i(· | pa), pa unchanged: the site's own factor cancels, and
            # ρ is the ratio of the products of all the other sites' factors.
            log_ratio = total(new_log_probs, new_inside, exclude=name) - total(
                old_log_probs, old_inside, exclude=name
            )
            if scaled[name]:
                # Under a `scale` s the site's factor is p_i^s but the proposal is p_i, so
                # p_i^(s - 1) remains: [p_i^s / p_i](x'_i) / [p_i^s / p_i](x_i).
                log_ratio = (
                    log_ratio
                    + (new_log_probs[name] - unscaled_log_prob(new_trace, name))
                    - (old_log_probs[name] - unscaled_log_prob(old_trace, name))
                )
        # Zero target density at the proposal is a rejection, never a finite ratio.
        log_ratio = jnp.where(new_inside, jnp.asarray(log_ratio, log_density.dtype), -jnp.inf)
        return MHState(proposed, log_density), log_ratio

    def draw(index: int, key: jax.Array, position: dict) -> jax.Array:
        name = sites[index]
        if name in proposals:
            return proposals[name][0](key, position[name])
        _, trace = run_model(position)
        return trace[name]["fn"].sample(key, sample_shapes[name])

    def step(key: jax.Array, state: MHState) -> tuple[MHState, SingleSiteInfo]:
        key_site, key_value, key_accept = jax.random.split(key, 3)
        index = jax.random.randint(key_site, (), 0, len(sites))

        def branch(i: int) -> Callable:
            return lambda position, key: propose(position, i, draw(i, key, position))

        proposal, log_ratio = jax.lax.switch(
            index, [branch(i) for i in range(len(sites))], state.position, key_value
        )
        new_state, info = accept_or_reject(key_accept, state, proposal, log_ratio, rule)
        return new_state, SingleSiteInfo(
            info.acceptance_probability, info.is_accepted, info.proposal, index
        )

    def make_state(position: Any) -> MHState:
        if not isinstance(position, Mapping) or set(position) != set(sites):
            given = sorted(position) if isinstance(position, Mapping) else type(position).__name__
            raise ProbkitError(
                f"`position` must be a dict with exactly the latent sites "
                f"{', '.join(map(repr, sites))}; got {given}. kernel.initial_position(key) "
                "draws one."
            )
        values = {}
        for name in sites:
            value = jnp.asarray(position[name])
            if value.shape != shapes[name] or not _same_kind(value.dtype, dtypes[name]):
                raise ProbkitError(
                    f"`position[{name!r}]` has shape {value.shape} and dtype {value.dtype}; the "
                    f"site has shape {shapes[name]} and dtype {dtypes[name]}."
                )
            # A strong dtype, so that every step and switch branch keeps the same types.
            values[name] = jax.lax.convert_element_type(value, jnp.result_type(value))
        return MHState(values, log_joint(values))

    def prior_draw(key: jax.Array) -> dict:
        trace = prior_trace(key)
        return {name: trace[name]["value"] for name in sites}

    def initial_position(key: jax.Array) -> dict:
        """A prior draw, redrawn (at most 100 times) until the observations have positive density."""
        key, key_draw = jax.random.split(key)

        def searching(carry):
            count, _, position = carry
            return (count < _MAX_INITIAL_DRAWS) & ~jnp.isfinite(log_joint(position))

        def redraw(carry):
            count, key, _ = carry
            key, key_draw = jax.random.split(key)
            return count + 1, key, prior_draw(key_draw)

        _, _, position = jax.lax.while_loop(searching, redraw, (1, key, prior_draw(key_draw)))
        return position

    # Abstract checks, before any user code is traced: the model must evaluate with traced
    # values substituted, and each proposal must keep the site's shape.
    position_shape = {name: jax.ShapeDtypeStruct(shapes[name], dtypes[name]) for name in sites}
    _abstract_run(log_joint, position_shape)
    for index, name in enumerate(sites):
        proposed = jax.eval_shape(
            lambda p, k, i=index: draw(i, k, p), position_shape, jax.random.key(0)
        )
        if proposed.shape != shapes[name] or not _same_kind(proposed.dtype, dtypes[name]):
            raise ProbkitError(
                f"`proposals[{name!r}]`: sample_fn returns shape {proposed.shape} and dtype "
                f"{proposed.dtype}; the site has shape {shapes[name]} and dtype {dtypes[name]}."
            )

    return SingleSiteKernel(
        init=checked_init("single_site_mh", make_state),
        step=step,
        propose=propose,
        initial_position=initial_position,
        sites=sites,
    )
