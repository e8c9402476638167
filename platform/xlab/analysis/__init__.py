"""Analysis of trained models: Fourier progress measures for modular arithmetic."""

from xlab.analysis.fourier import (
    cos_share,
    fcr,
    ffs,
    fourier_basis,
    fourier_basis_names,
    fourier_metrics,
    fourier_spectrum,
    model_spectra,
    plot_spectrum,
    spectrum_metrics,
)

__all__ = [
    "cos_share",
    "fcr",
    "ffs",
    "fourier_basis",
    "fourier_basis_names",
    "fourier_metrics",
    "fourier_spectrum",
    "model_spectra",
    "plot_spectrum",
    "spectrum_metrics",
]
