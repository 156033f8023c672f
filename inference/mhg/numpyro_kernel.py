"""Any probkit kernel as a ``numpyro.infer.mcmc.MCMCKernel``, so ``numpyro.infer.MCMC`` can run it.

Three ways in: a kernel *builder* (a function of a log density returning a kernel) with a NumPyro
``model`` (the log density is NumPyro's, on the unconstrained latent space) or with a
``potential_fn``; or a ready kernel (anything with ``init(position)`` and ``step(key, state)``).
``MCMC`` then runs it with every ``chain_method`` ("parallel", "sequential", "vectorized"), and
its results go to ``mcmc.get_samples()``, ``mcmc.get_extra_fields()`` and
``arviz.from_numpyro(mcmc)`` like NumPyro's own kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import ParamInfo, initialize_model
from numpyro.util import identity, is_prng_key

from probkit._errors import ProbkitError
from probkit._validate import is_concrete
from probkit.inference.mhg.green import MHGKernel

__all__ = ["NumPyroKernel", "NumPyroKernelState"]


class NumPyroKernelState(NamedTuple):
    """The state ``numpyro.infer.MCMC`` carries between steps of a :class:`NumPyroKernel`.

    Attributes
    ----------
    kernel_state : pytree
        The probkit kernel's own state (an ``MHState`` or whatever its ``init`` returns); it has
        at least ``position`` and ``log_density``.
    accept_prob : Array, shape ()
        The acceptance probability of the last step (0 before the first).
    is_accepted : Array, shape ()
        Whether the last step's proposal was accepted.
    num_steps : Array, shape ()
        The number of steps taken, warmup included.
    mean_accept_prob : Array, shape ()
        The running mean of ``accept_prob`` over those steps.
    rng_key : Array
        The key the next step splits.

    Notes
    -----
    ``z`` (the position, NumPyro's sample field) and ``potential_energy`` (minus the log
    density) are read from ``kernel_state`` rather than stored twice, so the two can never
    disagree. Under ``chain_method="vectorized"`` every field has a leading chain axis.
    """

    kernel_state: Any
    accept_prob: jax.Array
    is_accepted: jax.Array
    num_steps: jax.Array
    mean_accept_prob: jax.Array
    rng_key: jax.Array

    @property
    def z(self) -> Any:
        """The current position (NumPyro's sample field)."""
        return self.kernel_state.position

    @property
    def potential_energy(self) -> jax.Array:
        """Minus the log density at ``z`` (``arviz`` reports its negative as ``lp``)."""
        return -self.kernel_state.log_density


def _is_ready_kernel(obj: Any) -> bool:
    return callable(getattr(obj, "init", None)) and callable(getattr(obj, "step", None))


def _check_built(kernel: Any) -> Any:
    if not _is_ready_kernel(kernel):
        raise ProbkitError(
            "`kernel`: the builder must return a kernel with `init(position)` and "
            f"`step(key, state)`; it returned {type(kernel).__name__}. Pass a builder such as "
            "`lambda log_density_fn: random_walk(log_density_fn, 0.3)`."
        )
    return kernel


def _latent_sites(model: Callable, model_args: tuple, model_kwargs: dict) -> dict[str, bool]:
    """The model's latent sample sites, each with whether it is discrete."""
    # An abstract run of the model: the site types are static, nothing needs computing.
    latent: dict[str, bool] = {}

    def record(key):
        trace = handlers.trace(handlers.seed(model, rng_seed=key)).get_trace(
            *model_args, **model_kwargs
        )
        latent.update(
            (name, site["fn"].support.is_discrete)
            for name, site in trace.items()
            if site["type"] == "sample" and not site["is_observed"]
        )

    jax.eval_shape(record, jax.random.key(0))
    return latent


class NumPyroKernel(MCMCKernel):
    """A probkit Markov kernel that ``numpyro.infer.MCMC`` can run.

    Parameters
    ----------
    kernel : callable or kernel
        Either a *builder*, ``kernel(log_density_fn) -> kernel`` (e.g.
        ``lambda f: random_walk(f, 0.3)``), used with ``model`` or ``potential_fn``; or a ready
        kernel: any object with ``init(position)`` returning a state that has ``position`` and
        ``log_density``, and ``step(key, state) -> (state, info)`` whose ``info`` has
        ``acceptance_probability`` and ``is_accepted``. Nothing else about the kernel is used,
        so positions may be any pytree and ``info`` may carry more fields.
    model : callable, optional
        A NumPyro model with continuous latent sites, for a builder. The builder gets
        NumPyro's log joint density on the unconstrained latent space (transform log-Jacobians
        included, i.e. minus NumPyro's potential energy); samples come back constrained, with
        the deterministic sites.
    potential_fn : callable, optional
        For a builder without a model: ``potential_fn(position)`` is minus the target's log
        density (NumPyro's convention). Runs then need ``init_params`` (or
        ``initial_position``).
    init_strategy : callable
        With ``model``: NumPyro's per-site initialisation strategy, used when ``mcmc.run`` is
        not given ``init_params`` (which, with a model, are unconstrained values).
    initial_position : callable, optional
        Without ``model``: ``initial_position(key) -> position``, used when ``mcmc.run`` is not
        given ``init_params``. Defaults to the kernel's own ``initial_position`` attribute when
        it has one (e.g. :func:`~probkit.inference.mhg.trace.single_site_mh`'s prior draw).

    Raises
    ------
    ProbkitError
        If ``kernel`` is missing or neither a builder nor a kernel; a builder comes without
        ``model`` or ``potential_fn``, or with both; a ready kernel comes with either (it
        already has its target); or an option is not callable. At ``init``: a model with no
        latent site or with a discrete one (move those with
        :func:`~probkit.inference.mhg.trace.single_site_mh` instead), no way to find an initial
        position, or an initial position of zero density.

    Notes
    -----
    probkit's kernels do not adapt: the ``num_warmup`` steps run the same kernel and are simply
    discarded (they serve as burn-in). The state records ``accept_prob``, ``is_accepted`` and
    ``potential_energy`` by default, so ``mcmc.get_extra_fields()`` returns them and
    ``arviz.from_numpyro(mcmc)`` shows ``acceptance_rate`` and ``lp`` in ``sample_stats``.

    Under ``chain_method="vectorized"`` NumPyro passes a batch of keys to :meth:`init`; the
    kernel then keeps a batch of states and :meth:`sample` maps the step over the chains with
    ``jax.vmap`` (detected from the state's key, so the kernel object holds no mode flag).

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC
    >>> from probkit.inference.mhg import random_walk
    >>> from probkit.inference.mhg.numpyro_kernel import NumPyroKernel
    >>> def model(y):
    ...     theta = numpyro.sample("theta", dist.Normal(0.0, 1.0))
    ...     numpyro.sample("y", dist.Normal(theta, 1.0), obs=y)
    >>> kernel = NumPyroKernel(lambda f: random_walk(f, 0.8), model=model)
    >>> mcmc = MCMC(kernel, num_warmup=200, num_samples=500, progress_bar=False)
    >>> mcmc.run(jax.random.key(0), 1.3)
    >>> mcmc.get_samples()["theta"].shape
    (500,)
    """

    sample_field = "z"
    default_fields = ("z", "potential_energy", "accept_prob", "is_accepted")

    def __init__(
        self,
        kernel: Any = None,
        *,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        init_strategy: Callable = init_to_uniform,
        initial_position: Callable | None = None,
    ):
        if kernel is None:
            raise ProbkitError(
                "`kernel` is missing: pass a probkit kernel (with `init` and `step`), or a "
                "builder `log_density_fn -> kernel` together with `model=` or `potential_fn=`."
            )
        ready = _is_ready_kernel(kernel)
        if not ready and not callable(kernel):
            raise ProbkitError(
                f"`kernel` must be a kernel (with `init` and `step`) or a builder "
                f"`log_density_fn -> kernel`; got {type(kernel).__name__}."
            )
        for name, value in (("model", model), ("potential_fn", potential_fn)):
            if value is not None and not callable(value):
                raise ProbkitError(f"`{name}` must be callable; got {type(value).__name__}.")
        if ready and (model is not None or potential_fn is not None):
            raise ProbkitError(
                "`kernel` is a ready kernel, which already closes over its target; drop "
                "`model=`/`potential_fn=`, or pass a builder `log_density_fn -> kernel` instead."
            )
        if not ready and model is None and potential_fn is None:
            raise ProbkitError(
                "`kernel` is a builder `log_density_fn -> kernel`, which needs a target: pass "
                "`model=` (a NumPyro model) or `potential_fn=` (minus the log density)."
            )
        if model is not None and potential_fn is not None:
            raise ProbkitError(
                "pass either `model=` or `potential_fn=`, not both: the target is NumPyro's "
                "model density or the given potential."
            )
        if not callable(init_strategy):
            raise ProbkitError(
                f"`init_strategy` must be a NumPyro init strategy such as init_to_median; got "
                f"{type(init_strategy).__name__}."
            )
        if initial_position is not None and not callable(initial_position):
            raise ProbkitError(
                f"`initial_position` must be a function key -> position; got "
                f"{type(initial_position).__name__}."
            )
        if initial_position is not None and model is not None:
            raise ProbkitError(
                "`initial_position` is for kernels without a model; with `model=`, choose the "
                "start with `init_strategy=` or pass unconstrained `init_params` to `mcmc.run`."
            )
        self._builder = None if ready else kernel
        self._model = model
        self._init_strategy = init_strategy
        if ready:
            self._kernel = kernel
        elif potential_fn is not None:
            self._kernel = _check_built(kernel(lambda position: -potential_fn(position)))
        else:
            self._kernel = None  # built at init, from the model's arguments
        if initial_position is None and self._kernel is not None:
            initial_position = getattr(self._kernel, "initial_position", None)
            initial_position = initial_position if callable(initial_position) else None
        self._initial_position = initial_position
        # Set by `init` for a model: functions of the model's arguments (NumPyro's
        # `dynamic_args=True` form), so `jit_model_args=True` works.
        self._potential_fn_gen = None
        self._postprocess_fn_gen = None
        # numpyro.infer.MCMC re-runs `init` while this is None; once set, a run that starts
        # from `post_warmup_state` reuses that state instead of asking for init_params again.
        self._sample_fn = None

    @property
    def model(self) -> Callable | None:
        """The NumPyro model, or ``None`` (``arviz.from_numpyro`` reads it)."""
        return self._model

    def _kernel_for(self, model_args: tuple, model_kwargs: dict | None) -> Any:
        if self._model is None:
            return self._kernel
        potential_fn = self._potential_fn_gen(*model_args, **(model_kwargs or {}))
        return _check_built(self._builder(lambda position: -potential_fn(position)))

    def init(
        self,
        rng_key: jax.Array,
        num_warmup: int,
        init_params: Any = None,
        model_args: tuple = (),
        model_kwargs: dict | None = None,
    ) -> NumPyroKernelState:
        """The initial state (a batch of states when ``rng_key`` is a batch of keys).

        Parameters
        ----------
        rng_key : Array
            One key, or ``num_chains`` keys under ``chain_method="vectorized"``.
        num_warmup : int
            Unused: probkit's kernels do not adapt (warmup steps are discarded).
        init_params : pytree, optional
            The initial position (with a leading chain axis for a batch of keys); with a model,
            unconstrained values. Needed unless there is a model or an ``initial_position``.
        model_args, model_kwargs
            The model's arguments.
        """
        model_kwargs = dict(model_kwargs or {})
        batched = not is_prng_key(rng_key)
        if batched:
            rng_key, key_init = jnp.swapaxes(jax.vmap(jax.random.split)(rng_key), 0, 1)
        else:
            rng_key, key_init = jax.random.split(rng_key)
        if self._model is not None:
            latent = _latent_sites(self._model, model_args, model_kwargs)
            if not latent:
                raise ProbkitError(
                    "`model` has no latent sample site (every site is observed or "
                    "deterministic): there is nothing to sample."
                )
            discrete = [name for name, is_discrete in latent.items() if is_discrete]
            if discrete:
                raise ProbkitError(
                    f"`model`: latent site(s) {', '.join(map(repr, discrete))} are discrete, and "
                    "a kernel built from a log density moves the continuous unconstrained space. "
                    "Use `NumPyroKernel(single_site_mh(model, model_args))` from "
                    "probkit.inference.mhg.trace, or marginalise them out."
                )
            model_info = initialize_model(
                key_init,
                self._model,
                init_strategy=self._init_strategy,
                dynamic_args=True,
                model_args=model_args,
                model_kwargs=model_kwargs,
            )
            self._potential_fn_gen = model_info.potential_fn
            self._postprocess_fn_gen = model_info.postprocess_fn
            if init_params is None:
                init_params = model_info.param_info.z
        elif init_params is None:
            if self._initial_position is None:
                raise ProbkitError(
                    "`init_params` is missing: pass the initial position to "
                    "`mcmc.run(key, init_params=...)` (with a leading axis of length num_chains "
                    "for several chains), or give NumPyroKernel an `initial_position(key)`."
                )
            draw = jax.vmap(self._initial_position) if batched else self._initial_position
            init_params = jax.jit(draw)(key_init)
        if isinstance(init_params, ParamInfo):
            init_params = init_params.z
        kernel = self._kernel_for(model_args, model_kwargs)
        # Compiled, so the model is not run operation by operation; the finiteness check that
        # the kernel's own `init` makes on concrete values is made here instead.
        make = jax.vmap(kernel.init) if batched else kernel.init
        kernel_state = jax.jit(make)(init_params)
        if is_concrete(kernel_state.log_density) and not np.all(
            np.isfinite(np.asarray(kernel_state.log_density))
        ):
            raise ProbkitError(
                "`init_params`: the log density at the initial position is "
                f"{np.asarray(kernel_state.log_density)}; start every chain where the target "
                "has positive, finite density."
            )
        if isinstance(kernel, MHGKernel) and is_concrete(kernel_state.log_density):
            # The MHG kernel's own checks (move probabilities, dimension matching, and the
            # round trips with check=True) need a concrete position: run them on one chain.
            kernel.init(jax.tree_util.tree_map(lambda leaf: leaf[0], init_params) if batched
                        else init_params)  # fmt: skip
        log_density = jnp.asarray(kernel_state.log_density)
        # The loop carry must keep one dtype: the acceptance statistics follow the log density.
        dtype = jnp.result_type(log_density.dtype, float)
        shape = jnp.shape(log_density)
        self._sample_fn = self.sample
        return NumPyroKernelState(
            kernel_state=kernel_state,
            accept_prob=jnp.zeros(shape, dtype),
            is_accepted=jnp.zeros(shape, bool),
            num_steps=jnp.zeros(shape, jnp.int32),
            mean_accept_prob=jnp.zeros(shape, dtype),
            rng_key=rng_key,
        )

    def sample(
        self, state: NumPyroKernelState, model_args: tuple, model_kwargs: dict | None
    ) -> NumPyroKernelState:
        """One step of the kernel (of every chain, for a batch of states)."""
        kernel = self._kernel_for(model_args, model_kwargs)

        def one(chain: NumPyroKernelState) -> NumPyroKernelState:
            rng_key, key_step = jax.random.split(chain.rng_key)
            kernel_state, info = kernel.step(key_step, chain.kernel_state)
            accept_prob = jnp.asarray(info.acceptance_probability, chain.accept_prob.dtype)
            num_steps = chain.num_steps + 1
            mean = chain.mean_accept_prob + (accept_prob - chain.mean_accept_prob) / num_steps
            return NumPyroKernelState(
                kernel_state=kernel_state,
                accept_prob=accept_prob,
                is_accepted=jnp.asarray(info.is_accepted, bool),
                num_steps=num_steps,
                mean_accept_prob=mean,
                rng_key=rng_key,
            )

        return one(state) if is_prng_key(state.rng_key) else jax.vmap(one)(state)

    def postprocess_fn(self, model_args: tuple, model_kwargs: dict | None) -> Callable:
        """With a model: unconstrained positions to constrained values plus deterministic sites.

        Without a model, positions are returned as they are.
        """
        if self._postprocess_fn_gen is None:
            return identity
        return self._postprocess_fn_gen(*model_args, **(model_kwargs or {}))

    def get_diagnostics_str(self, state: NumPyroKernelState) -> str:
        """The running acceptance rate, for NumPyro's progress bar."""
        return f"acc. rate={float(jnp.mean(state.mean_accept_prob)):.2f}"
