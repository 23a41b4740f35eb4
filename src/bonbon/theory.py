"""Best-of-n theory: the quantities BoNBoN aims at and the numbers to check results against.

For a prompt x, let pi_0 be the base policy and Q_x the CDF of the reward under pi_0. The best-of-n
distribution is

    pi_n(y|x) = n Q_x(y)^(n-1) pi_0(y|x)

and, with continuous rewards (no ties), its win rate against an independent pi_0 sample and its KL
from pi_0 depend on n only. BoNBoN's IPO term uses beta*(n) so that the optimum of the IPO loss has
the same expected log-ratio margin between best and worst samples as pi_n.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pandas as pd

ArrayLike = npt.ArrayLike  # scalars included


def harmonic(m: int) -> float:
    """Harmonic number H_m = sum_{k=1}^{m} 1/k, with H_0 = 0.

    Raises ValueError for m < 0.
    """
    if m < 0:
        raise ValueError(f"harmonic(m) needs m >= 0, got m={m}")
    # math.fsum: exact-rounded sum, no drift for large m
    return math.fsum(1.0 / k for k in range(1, m + 1))


def target_margin(n: int) -> float:
    """Target log-ratio margin between best and worst of n samples: (n-1) H_{n-1} = 1 / (2 beta*(n)).

    It is E[log pi_n/pi_0 (best)] - E[log pi_n/pi_0 (worst)] for best-of-n; 18.15 at n=8.
    Raises ValueError for n < 2 (no worst sample distinct from the best).
    """
    if n < 2:
        raise ValueError(f"best-of-n margin needs n >= 2, got n={n}")
    return (n - 1) * harmonic(n - 1)


def beta_star(n: int) -> float:
    """IPO regularisation that matches best-of-n: beta*(n) = 1 / (2 (n-1) H_{n-1}).

    n=2 -> 0.5, n=4 -> 1/11, n=8 -> 0.0275482. Raises ValueError for n < 2.
    """
    return 1.0 / (2.0 * target_margin(n))


def _check_n(n: ArrayLike) -> np.ndarray:
    arr = np.asarray(n, dtype=float)
    if np.any(arr < 1):
        raise ValueError(f"best-of-n needs n >= 1, got {n}")
    return arr


def _as_output(arr: np.ndarray, like: ArrayLike) -> float | np.ndarray:
    # scalars in, float out; arrays in, arrays out
    return float(arr) if np.ndim(like) == 0 else arr


def bon_win_rate(n: ArrayLike) -> float | np.ndarray:
    """Win rate of a best-of-n sample against an independent pi_0 sample: n / (n + 1).

    Exact for continuous rewards (the best of n+1 i.i.d. draws is the best-of-n one with probability
    n/(n+1)); with ties or discrete rewards it is only a bound. Vectorised over n.
    """
    arr = _check_n(n)
    return _as_output(arr / (arr + 1.0), n)


def bon_kl(n: ArrayLike) -> float | np.ndarray:
    """KL(pi_n || pi_0) = log n - (n-1)/n nats (continuous rewards; an upper bound otherwise).

    From integrating n u^(n-1) log(n u^(n-1)) over u in [0, 1]. Vectorised over n.
    """
    arr = _check_n(n)
    return _as_output(np.log(arr) - (arr - 1.0) / arr, n)


def bon_curve(n_max: int) -> pd.DataFrame:
    """Theoretical best-of-n frontier for n = 1..n_max: columns n, win_rate = n/(n+1),
    kl = log n - (n-1)/n."""
    if n_max < 1:
        raise ValueError(f"bon_curve needs n_max >= 1, got n_max={n_max}")
    n = np.arange(1, n_max + 1)
    return pd.DataFrame({"n": n, "win_rate": bon_win_rate(n), "kl": bon_kl(n)})
