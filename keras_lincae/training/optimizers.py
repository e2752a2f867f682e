"""Rectified Adam for Keras 3, numerically aligned with ``torch.optim.RAdam``.

The official Lin-CAE trainer uses ``torch.optim.RAdam(params, lr=...)`` with
every other argument at its default (betas (0.9, 0.999), eps 1e-8, no weight
decay).  This optimizer reproduces that update rule with ``keras.ops`` so it
runs (and jit-compiles) on jax, tensorflow and torch.
"""

import keras
from keras import ops

from keras_lincae.backend_dispatch import bulk_radam_update, updates_variables_in_bulk


class RAdam(keras.optimizers.Optimizer):
    """RAdam (Liu et al., 2020), following ``torch.optim.RAdam`` step by step.

    Per variable, at step ``t = iterations + 1``::

        g   = grad (+ weight_decay * w        if weight decay is coupled)
        w   = w * (1 - lr * weight_decay)     (if decoupled)
        m   = beta_1 * m + (1 - beta_1) * g
        v   = beta_2 * v + (1 - beta_2) * g^2
        m_hat   = m / (1 - beta_1^t)
        rho_inf = 2 / (1 - beta_2) - 1
        rho_t   = rho_inf - 2 t beta_2^t / (1 - beta_2^t)
        if rho_t > 5:   w -= lr * m_hat * r_t * sqrt(1 - beta_2^t) / (sqrt(v) + eps)
                        r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t))
        else:           w -= lr * m_hat        (no adaptive term: SGD with momentum)

    The branch is chosen with ``ops.where`` so the step is traceable.  Powers
    of the betas are computed as ``exp(t * log1p(-(1 - beta)))`` from the
    double-precision ``1 - beta`` to keep ``rho_t`` accurate in float32.

    Args:
        learning_rate: float, schedule or callable. Defaults to ``1e-3``
            (torch default).
        beta_1, beta_2: moment decay rates (torch ``betas``).
        epsilon: added to ``sqrt(v)``; torch default ``1e-8``.
        weight_decay: float, torch-style weight decay (default 0).
        decoupled_weight_decay: ``False`` (torch default) adds
            ``weight_decay * w`` to the gradient; ``True`` shrinks the
            weights by ``lr * weight_decay`` before the update (RAdamW).
        **kwargs: other ``keras.optimizers.Optimizer`` arguments (clipnorm,
            use_ema, ...). Keras' own ``weight_decay`` mechanism is not used.
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        weight_decay=0.0,
        decoupled_weight_decay=False,
        name="radam",
        **kwargs,
    ):
        weight_decay = 0.0 if weight_decay is None else float(weight_decay)
        if not 0.0 <= beta_1 < 1.0 or not 0.0 <= beta_2 < 1.0:
            raise ValueError(f"Betas must be in [0, 1), got ({beta_1}, {beta_2}).")
        if epsilon < 0:
            raise ValueError(f"`epsilon` must be >= 0, got {epsilon}.")
        if weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0, got {weight_decay}.")
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=None, **kwargs)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.radam_weight_decay = weight_decay
        self.decoupled_weight_decay = bool(decoupled_weight_decay)

    def build(self, var_list):
        """Create one first-moment and one second-moment slot per variable."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )

    def _step_factors(self, t, dtype):
        """At step `t`: `1 - beta_1^t`, `1 - beta_2^t`, the rectification `r_t` and whether it
        applies (`rho_t > 5`), as scalar tensors of `dtype`."""
        one_minus_b1 = 1.0 - self.beta_1
        one_minus_b2 = 1.0 - self.beta_2
        # beta^t and 1 - beta^t without float32 cancellation
        log_b1 = ops.log1p(ops.cast(-one_minus_b1, dtype))
        log_b2 = ops.log1p(ops.cast(-one_minus_b2, dtype))
        bias1 = -ops.expm1(t * log_b1)
        bias2 = -ops.expm1(t * log_b2)
        beta2_t = ops.exp(t * log_b2)

        rho_inf = 2.0 / one_minus_b2 - 1.0
        rho_t = rho_inf - 2.0 * t * beta2_t / bias2
        rect_sq = (
            (rho_t - 4.0)
            * (rho_t - 2.0)
            * rho_inf
            / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
        )
        return bias1, bias2, ops.sqrt(ops.maximum(rect_sq, 0.0)), rho_t > 5.0

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """All variables at once where the backend updates in bulk (torch: `torch._foreach_*`
        kernels, one dispatch per step instead of ~20 per variable); else one by one."""
        if not updates_variables_in_bulk():
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        t = ops.cast(self.iterations + 1, "float32")
        bias1, bias2, rect, rectified = (ops.convert_to_numpy(f) for f in self._step_factors(t, "float32"))
        index = [self._get_variable_index(v) for v in trainable_variables]
        bulk_radam_update(
            trainable_variables, grads, [self._momentums[i] for i in index], [self._velocities[i] for i in index],
            learning_rate=float(ops.convert_to_numpy(learning_rate)), beta_1=self.beta_1, beta_2=self.beta_2,
            epsilon=self.epsilon, weight_decay=self.radam_weight_decay, decoupled=self.decoupled_weight_decay,
            bias_correction1=float(bias1), bias_correction2=float(bias2),
            rectification=float(rect) if rectified else None)

    def update_step(self, gradient, variable, learning_rate):
        """Apply one RAdam step to ``variable``."""
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        t = ops.cast(self.iterations + 1, dtype)
        idx = self._get_variable_index(variable)
        m = self._momentums[idx]
        v = self._velocities[idx]

        wd = self.radam_weight_decay
        if wd != 0.0:
            if self.decoupled_weight_decay:
                self.assign(variable, variable * (1.0 - lr * wd))
            else:
                gradient = gradient + wd * variable

        self.assign_add(m, (gradient - m) * (1.0 - self.beta_1))
        self.assign(v, v * self.beta_2 + ops.square(gradient) * (1.0 - self.beta_2))

        bias1, bias2, rect, use_rect = self._step_factors(t, dtype)
        m_hat = m / bias1
        adaptive = ops.sqrt(bias2) / (ops.sqrt(v) + self.epsilon)
        scale = ops.where(use_rect, adaptive * rect, ops.ones_like(adaptive))
        self.assign_sub(variable, m_hat * lr * scale)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "weight_decay": self.radam_weight_decay,
                "decoupled_weight_decay": self.decoupled_weight_decay,
            }
        )
        return config
