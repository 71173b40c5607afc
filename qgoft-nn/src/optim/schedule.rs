//! Learning-rate schedules: linear warm-up, then constant, linear or cosine decay.
//!
//! For step `s` (0-based), warm-up length `w`, total `T`, peak `lr`, floor `lr_min`:
//! - `s < w`: `lr (s + 1) / w`;
//! - otherwise, with progress `q = min(1, (s - w) / max(1, T - w))`:
//!   constant `lr`; linear `lr_min + (lr - lr_min)(1 - q)`;
//!   cosine `lr_min + (lr - lr_min)(1 + cos(pi q)) / 2`.

/// The shape of the decay after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decay {
    /// Keep the peak rate.
    Constant,
    /// Linear to the floor at the last step.
    Linear,
    /// Half-cosine to the floor at the last step.
    Cosine,
}

/// A warm-up-then-decay schedule.
///
/// ```
/// use qgoft_nn::optim::{Decay, LrSchedule};
/// let s = LrSchedule { peak: 1.0, min: 0.0, warmup_steps: 2, total_steps: 6, decay: Decay::Linear };
/// let lrs: Vec<f32> = (0..6).map(|t| s.lr_at(t)).collect();
/// assert_eq!(lrs, [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    /// Peak learning rate (reached at the end of warm-up).
    pub peak: f32,
    /// Floor learning rate.
    pub min: f32,
    /// Warm-up steps.
    pub warmup_steps: usize,
    /// Total steps (warm-up included).
    pub total_steps: usize,
    /// Decay after warm-up.
    pub decay: Decay,
}

impl LrSchedule {
    /// A constant rate, no warm-up.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::optim::LrSchedule::constant(0.1).lr_at(100), 0.1);
    /// ```
    pub fn constant(lr: f32) -> Self {
        LrSchedule { peak: lr, min: lr, warmup_steps: 0, total_steps: 1, decay: Decay::Constant }
    }

    /// The rate for step `step` (0-based).
    ///
    /// ```
    /// use qgoft_nn::optim::{Decay, LrSchedule};
    /// let s = LrSchedule { peak: 1.0, min: 0.0, warmup_steps: 0, total_steps: 3, decay: Decay::Cosine };
    /// assert_eq!(s.lr_at(0), 1.0);
    /// assert!(s.lr_at(3).abs() < 1e-7);
    /// ```
    pub fn lr_at(&self, step: usize) -> f32 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f32 / self.warmup_steps as f32;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let q = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let (peak, min) = (f64::from(self.peak), f64::from(self.min));
        let lr = match self.decay {
            Decay::Constant => peak,
            Decay::Linear => min + (peak - min) * (1.0 - q),
            Decay::Cosine => min + (peak - min) * 0.5 * (1.0 + (std::f64::consts::PI * q).cos()),
        };
        lr as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = LrSchedule { peak: 2.0, min: 0.2, warmup_steps: 4, total_steps: 14, decay: Decay::Cosine };
        assert_eq!(s.lr_at(0), 0.5);
        assert_eq!(s.lr_at(3), 2.0);
        assert!((s.lr_at(9) - 1.1).abs() < 1e-6, "{}", s.lr_at(9));
        assert!((s.lr_at(14) - 0.2).abs() < 1e-6);
        assert!((s.lr_at(1000) - 0.2).abs() < 1e-6);
        let lrs: Vec<f32> = (4..15).map(|t| s.lr_at(t)).collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
    }
}
