"""Small models with exact answers, the references that the SMC and MCMC checks compare with.

Each reference is computed independently of the code under test: by enumeration, the forward
algorithm, the Kalman filter or a conjugate formula, in NumPy/SciPy float64.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from scipy import special, stats

from probkit.inference.mhg.padded import Padded
from probkit.inference.smc.filtering import StateSpaceModel

__all__ = [
    "BetaBernoulli",
    "DiscreteHMM",
    "DiscreteSites",
    "LinearGaussianSSM",
    "NormalNormal",
    "PolynomialRegression",
    "RandomDimensionProgram",
    "SprinklerSoft",
]


@dataclasses.dataclass(frozen=True)
class SprinklerSoft:
    """The "soft" sprinkler network of monad-bayes (``models/Sprinkler.hs``).

    rain ~ Bernoulli(0.3), factor 0.2 if it rains; sprinkler ~ Bernoulli(0.1 if rain else 0.4),
    factor 0.1 if the sprinkler is on. Z = 0.5026 and P(rain) = 0.108635 (research note §4, R8).
    """

    def exact_measure(self) -> dict[tuple[int, int], float]:
        """``{(rain, sprinkler): mass}``, the unnormalised posterior; its total is Z."""
        measure = {}
        for rain in (0, 1):
            for sprinkler in (0, 1):
                p_rain = 0.3 * 0.2 if rain else 0.7
                p_on = 0.1 if rain else 0.4
                p_sprinkler = p_on * 0.1 if sprinkler else 1.0 - p_on
                measure[(rain, sprinkler)] = p_rain * p_sprinkler
        return measure


@dataclasses.dataclass(frozen=True)
class DiscreteHMM:
    """A hidden Markov model with finite states and Gaussian emissions ``y_t ~ N(μ_{x_t}, σ²)``."""

    initial_probs: tuple[float, ...] = (0.5, 0.3, 0.2)
    transition_matrix: tuple[tuple[float, ...], ...] = (
        (0.8, 0.15, 0.05),
        (0.1, 0.7, 0.2),
        (0.2, 0.2, 0.6),
    )
    means: tuple[float, ...] = (-1.0, 0.0, 2.0)
    scale: float = 1.0
    observations: tuple[float, ...] = (-0.5, 0.3, 2.1, 1.4)

    def state_space_model(self) -> StateSpaceModel:
        """The model as distributions, for :func:`~probkit.inference.smc.filtering.particle_filter`."""
        initial = jnp.asarray(self.initial_probs)
        matrix = jnp.asarray(self.transition_matrix)
        means = jnp.asarray(self.means)
        return StateSpaceModel(
            initial=lambda: dist.Categorical(probs=initial),
            transition=lambda x, t: dist.Categorical(probs=matrix[x]),
            observation=lambda x, t: dist.Normal(means[x], self.scale),
        )

    def _emission(self, t: int) -> np.ndarray:
        return stats.norm.pdf(self.observations[t], np.asarray(self.means), self.scale)

    def forward(self) -> list[np.ndarray]:
        """``α_t(s) = p(x_t = s, y_{0:t})`` for every ``t`` (the forward algorithm)."""
        alpha = np.asarray(self.initial_probs) * self._emission(0)
        alphas = [alpha]
        for t in range(1, len(self.observations)):
            alpha = (alpha @ np.asarray(self.transition_matrix)) * self._emission(t)
            alphas.append(alpha)
        return alphas

    def exact_pair_measure(self) -> dict[tuple[int, int], float]:
        """``{(x_{T-2}, x_{T-1}): p(x_{T-2}, x_{T-1}, y_{0:T-1})}`` (needs T ≥ 2)."""
        alphas = self.forward()
        last = len(self.observations) - 1
        matrix = np.asarray(self.transition_matrix)
        emission = self._emission(last)
        return {
            (a, b): float(alphas[last - 1][a] * matrix[a, b] * emission[b])
            for a in range(matrix.shape[0])
            for b in range(matrix.shape[0])
        }


@dataclasses.dataclass(frozen=True)
class LinearGaussianSSM:
    """``x_0 ~ N(0, s0²)``, ``x_t = a x_{t-1} + N(0, q²)``, ``y_t = x_t + N(0, r²)``."""

    a: float = 0.9
    q: float = 0.5
    r: float = 0.8
    s0: float = 1.0

    def state_space_model(self) -> StateSpaceModel:
        """The model as distributions."""
        return StateSpaceModel(
            initial=lambda: dist.Normal(0.0, self.s0),
            transition=lambda x, t: dist.Normal(self.a * x, self.q),
            observation=lambda x, t: dist.Normal(x, self.r),
        )

    def simulate(self, num_steps: int, seed: int) -> np.ndarray:
        """Observations ``y_0..y_{T-1}`` drawn from the model."""
        rng = np.random.default_rng(seed)
        x = rng.normal(0.0, self.s0)
        ys = []
        for t in range(num_steps):
            if t > 0:
                x = self.a * x + self.q * rng.normal()
            ys.append(x + self.r * rng.normal())
        return np.asarray(ys)

    def kalman(self, observations: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """``(log p(y), filtering means, filtering variances)`` by the Kalman filter."""
        mean, variance, log_evidence = 0.0, self.s0**2, 0.0
        means, variances = [], []
        for t, y in enumerate(np.asarray(observations, dtype=float)):
            if t > 0:
                mean, variance = self.a * mean, self.a**2 * variance + self.q**2
            innovation_variance = variance + self.r**2
            log_evidence += stats.norm.logpdf(y, mean, np.sqrt(innovation_variance))
            gain = variance / innovation_variance
            mean, variance = mean + gain * (y - mean), (1 - gain) * variance
            means.append(mean)
            variances.append(variance)
        return float(log_evidence), np.asarray(means), np.asarray(variances)


@dataclasses.dataclass(frozen=True)
class NormalNormal:
    """``θ ~ N(μ0, τ²)``, ``y_i ~ N(θ, σ²)`` independently; ``Z = N(y; μ0 1, σ² I + τ² 11ᵀ)``."""

    observations: tuple[float, ...] = (0.5, 1.2, 0.3, 2.0, 1.1, 0.9, 1.5, 0.2, 0.8, 1.3)
    prior_mean: float = 0.0
    prior_scale: float = 1.0
    noise_scale: float = 1.0

    def log_evidence(self) -> float:
        """``log Z``."""
        y = np.asarray(self.observations)
        covariance = self.noise_scale**2 * np.eye(y.size) + self.prior_scale**2
        return float(
            stats.multivariate_normal(np.full(y.size, self.prior_mean), covariance).logpdf(y)
        )


@dataclasses.dataclass(frozen=True)
class BetaBernoulli:
    """``θ ~ Beta(a, b)``, ``y_i ~ Bernoulli(θ)``; ``Z = B(a + k, b + n - k) / B(a, b)``."""

    observations: tuple[int, ...] = (1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1)
    a: float = 2.0
    b: float = 2.0

    def log_evidence(self) -> float:
        """``log Z``."""
        y = np.asarray(self.observations)
        k, n = int(y.sum()), y.size
        return float(special.betaln(self.a + k, self.b + n - k) - special.betaln(self.a, self.b))


@dataclasses.dataclass(frozen=True)
class RandomDimensionProgram:
    """``k ~ Geometric(1/2)`` on {0, 1, ...}, ``x_1..x_k ~ N(0, 1)``, ``y ~ N(Σ x, 1)``.

    The trans-dimensional target of the research note (§4, R8): with ``y = 2.5``,
    ``P(k | y) ∝ 2^{-(k+1)} N(y; 0, 1 + k)``, giving P(k = 0..4 | y) = 0.19306, 0.32563,
    0.22379, 0.12573, 0.06574 and E[k | y] = 1.8081. A chain on padded states of capacity ``C``
    targets the posterior restricted to ``k <= C``; :meth:`posterior_k` is that restriction.
    Given ``k``, ``x | y`` is Gaussian with mean ``y/(1+k) 1`` and covariance
    ``I - 11ᵀ/(1+k)``, so exact posterior draws are available (:meth:`sample_posterior`).
    """

    y: float = 2.5
    capacity: int = 20

    def log_density(self, x) -> jnp.ndarray:
        """The unnormalised log posterior of a :class:`~probkit.inference.mhg.padded.Padded` x."""
        values = jnp.where(x.mask, x.values, 0.0)
        log_prior_k = -(x.size + 1) * jnp.log(2.0)
        log_prior_x = jnp.sum(jnp.where(x.mask, -0.5 * values**2, 0.0)) - 0.5 * x.size * jnp.log(
            2 * jnp.pi
        )
        return log_prior_k + log_prior_x - 0.5 * (self.y - jnp.sum(values)) ** 2

    def posterior_k(self) -> np.ndarray:
        """``P(k | y)`` for ``k = 0..capacity`` (restricted to the capacity)."""
        k = np.arange(self.capacity + 1)
        log_mass = -(k + 1) * np.log(2.0) + stats.norm.logpdf(self.y, 0.0, np.sqrt(1.0 + k))
        mass = np.exp(log_mass - log_mass.max())
        return mass / mass.sum()

    def sample_posterior(self, rng: np.random.Generator) -> np.ndarray:
        """One exact posterior draw ``x`` (length ``k``), on the host."""
        k = int(rng.choice(self.capacity + 1, p=self.posterior_k()))
        z = rng.standard_normal(k)
        # x = y/(1+k) 1 + (I - 11ᵀ/(1+k))^{1/2} z; the square root of the projection-like
        # covariance is I - c 11ᵀ with c = (1 - 1/sqrt(1+k))/k.
        c = (1.0 - 1.0 / np.sqrt(1.0 + k)) / k if k else 0.0
        return self.y / (1.0 + k) + z - c * z.sum()

    def posterior_draw(self, key, y=None):
        """One exact posterior draw as a :class:`~probkit.inference.mhg.padded.Padded`, in JAX.

        ``y`` (traced or not) replaces :attr:`y`, for simulators that redraw the data.
        """
        y = self.y if y is None else y
        key_k, key_z = jax.random.split(key)
        k = jnp.arange(self.capacity + 1)
        variance = 1.0 + k
        log_mass = -(k + 1) * jnp.log(2.0) - 0.5 * y**2 / variance - 0.5 * jnp.log(variance)
        size = jax.random.categorical(key_k, log_mass).astype(jnp.int32)
        mask = jnp.arange(self.capacity) < size
        z = jnp.where(mask, jax.random.normal(key_z, (self.capacity,)), 0.0)
        count = jnp.maximum(size, 1).astype(z.dtype)
        c = jnp.where(size > 0, (1.0 - 1.0 / jnp.sqrt(1.0 + size)) / count, 0.0)
        values = jnp.where(mask, y / (1.0 + size) + z - c * jnp.sum(z), 0.0)
        return Padded(values, size)

    def prior_draw(self, key):
        """One draw of ``(k, x)`` from the prior restricted to ``k <= capacity``, in JAX."""
        key_k, key_x = jax.random.split(key)
        k = jnp.arange(self.capacity + 1)
        size = jax.random.categorical(key_k, -(k + 1) * jnp.log(2.0)).astype(jnp.int32)
        mask = jnp.arange(self.capacity) < size
        return Padded(jnp.where(mask, jax.random.normal(key_x, (self.capacity,)), 0.0), size)

    def log_density_given(self, x, y):
        """:meth:`log_density` with the observation ``y`` as an argument."""
        return dataclasses.replace(self, y=y).log_density(x)


@dataclasses.dataclass(frozen=True)
class PolynomialRegression:
    """Polynomial regression of unknown degree with conjugate Gaussian coefficients.

    ``y_i = Σ_{j<k} β_j t_i^j + ε_i`` with ``ε_i ~ N(0, σ²)``, ``β_j ~ N(0, τ²)`` and the number
    of coefficients ``k`` uniform on {1, ..., max_terms}. Given ``k`` the evidence is
    ``N(y; 0, σ² I + τ² X_k X_kᵀ)``, so ``P(k | y)`` is exact (research note §4, R8). The data are
    a fixed draw from a quadratic.
    """

    num_points: int = 12
    max_terms: int = 5
    noise_scale: float = 0.5
    prior_scale: float = 1.5
    seed: int = 20261127

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """``(t, y)``, the design points in [-1, 1] and the responses."""
        rng = np.random.default_rng(self.seed)
        t = np.linspace(-1.0, 1.0, self.num_points)
        y = 0.4 - 0.8 * t + 1.3 * t**2 + self.noise_scale * rng.standard_normal(self.num_points)
        return t, y

    def design(self) -> np.ndarray:
        """The full design matrix ``(num_points, max_terms)`` of powers ``t^j``."""
        t, _ = self.data()
        return t[:, None] ** np.arange(self.max_terms)[None, :]

    def log_density(self, beta) -> jnp.ndarray:
        """The unnormalised log posterior of padded coefficients (size ``k >= 1``)."""
        _, y = self.data()
        design = jnp.asarray(self.design())
        coefficients = jnp.where(beta.mask, beta.values, 0.0)
        residual = jnp.asarray(y) - design @ coefficients
        log_prior = jnp.sum(
            jnp.where(beta.mask, -0.5 * (beta.values / self.prior_scale) ** 2, 0.0)
        ) - beta.size * (jnp.log(self.prior_scale) + 0.5 * jnp.log(2 * jnp.pi))
        log_likelihood = -0.5 * jnp.sum(residual**2) / self.noise_scale**2
        in_range = (beta.size >= 1) & (beta.size <= self.max_terms)
        return jnp.where(in_range, log_prior + log_likelihood, -jnp.inf)

    def posterior_k(self) -> np.ndarray:
        """``P(k | y)`` for ``k = 1..max_terms`` (index 0 is ``k = 1``)."""
        _, y = self.data()
        design = self.design()
        n = self.num_points
        # The unnormalised log_density leaves out the likelihood's constant, the same for all k.
        log_mass = []
        for k in range(1, self.max_terms + 1):
            x = design[:, :k]
            covariance = self.noise_scale**2 * np.eye(n) + self.prior_scale**2 * x @ x.T
            log_mass.append(stats.multivariate_normal(np.zeros(n), covariance).logpdf(y))
        log_mass = np.array(log_mass)
        mass = np.exp(log_mass - log_mass.max())
        return mass / mass.sum()


@dataclasses.dataclass(frozen=True)
class DiscreteSites:
    """A NumPyro model whose latent sites are all finite, for exact single-site MH checks.

    ``a ~ Bernoulli(0.3)``, ``b | a ~ Categorical(probs_b[a])`` on {0, 1, 2},
    ``c | a, b ~ Bernoulli(sigmoid(-1 + a + b/2))``, ``d | b ~ DiscreteUniform(0, b)`` (its
    support moves with ``b``: reusing ``d`` after ``b`` shrinks is the monad-bayes PR #6 bug) and
    ``y ~ Poisson(1 + b + 2c + d)`` observed. :meth:`exact_posterior` is written out from these
    formulas, independently of NumPyro.
    """

    y: int = 2
    probs_b: tuple = ((0.5, 0.3, 0.2), (0.1, 0.3, 0.6))
    cardinality: tuple = (("a", 2), ("b", 3), ("c", 2), ("d", 3))

    def model(self, y):
        """The NumPyro model; call with the observation ``y``."""
        a = numpyro.sample("a", dist.Bernoulli(0.3))
        b = numpyro.sample("b", dist.Categorical(jnp.asarray(self.probs_b)[a]))
        c = numpyro.sample("c", dist.Bernoulli(jax.nn.sigmoid(-1.0 + a + 0.5 * b)))
        d = numpyro.sample("d", dist.DiscreteUniform(0, b))
        numpyro.sample("y", dist.Poisson(1.0 + b + 2 * c + d), obs=y)

    def exact_posterior(self) -> np.ndarray:
        """π over the states ``itertools.product`` of the sites' values (0 where d > b)."""
        probs_b = np.asarray(self.probs_b)
        weights = []
        for a, b, c, d in itertools.product(*(range(k) for _, k in self.cardinality)):
            p_c = special.expit(-1.0 + a + 0.5 * b)
            weights.append(
                (0.3 if a else 0.7)
                * probs_b[a, b]
                * (p_c if c else 1.0 - p_c)
                * (1.0 / (b + 1) if d <= b else 0.0)
                * stats.poisson.pmf(self.y, 1.0 + b + 2 * c + d)
            )
        weights = np.array(weights)
        return weights / weights.sum()
