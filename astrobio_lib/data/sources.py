"""Registry of the data sources the seeds name, each an adapter with the same interface.

``check()`` returns one of ``ok``, ``offline``, ``missing-credentials``, ``not-implemented`` or
``missing-package`` with a reason; it never raises and never hangs (network probes time out in
a few seconds). ``fetch(dest)`` downloads (online; credentials from environment variables only)
and ``load(path)`` reads a local copy. Sources without a real adapter here are registered
honestly: their ``check()`` says what is missing and ``fetch`` / ``load`` raise.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class SourceStatus:
    status: str  # ok | offline | missing-credentials | not-implemented | missing-package
    detail: str


def _reachable(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """True when a TCP connection to the URL's host opens within ``timeout_s``."""
    host = urllib.parse.urlparse(url).hostname or url
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True, f"{host} reachable"
    except OSError as exc:
        return False, f"{host} unreachable ({type(exc).__name__}: {exc})"


def _package_version(name: str) -> Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Source:
    name: str
    modality: str
    access: str  # tap | http | package | local | model
    description: str
    licence: str
    url: str = ""
    credentials_env: Optional[str] = None
    package: Optional[str] = None
    implemented: bool = False
    fetcher: Optional[Callable[[Path], Path]] = None
    loader: Optional[Callable[[Path], Any]] = None

    def check(self) -> SourceStatus:
        """Returns whether this source can deliver data here, and why (never raises)."""
        try:
            if not self.implemented:
                return SourceStatus("not-implemented", f"no adapter yet: {self.description}")
            if self.package:
                version = _package_version(self.package)
                if version is None:
                    return SourceStatus("missing-package", f"pip install {self.package}")
                return SourceStatus("ok", f"{self.package} {version} (offline, shipped with the package)")
            if self.credentials_env and not os.environ.get(self.credentials_env):
                return SourceStatus("missing-credentials", f"set {self.credentials_env}")
            if self.access in ("tap", "http"):
                ok, detail = _reachable(self.url)
                return SourceStatus("ok" if ok else "offline", detail)
            return SourceStatus("ok", self.access)
        except Exception as exc:  # a status probe must never take the pipeline down
            return SourceStatus("offline", f"check failed: {type(exc).__name__}: {exc}")

    def fetch(self, dest: str | Path) -> Path:
        """Downloads the source into ``dest``; returns the local path.

        Raises:
            NotImplementedError: no adapter for this source.
        """
        if self.fetcher is None:
            raise NotImplementedError(f"source {self.name}: no fetch adapter ({self.check().detail})")
        return self.fetcher(Path(dest))

    def load(self, path: str | Path) -> Any:
        """Reads a local copy of the source.

        Raises:
            NotImplementedError: no adapter for this source.
        """
        if self.loader is None:
            raise NotImplementedError(f"source {self.name}: no load adapter ({self.check().detail})")
        return self.loader(Path(path))


def _catalog_fetch(dest: Path) -> Path:
    from astrobio_lib.data.catalog import fetch_archive

    return fetch_archive(dest)


def _catalog_load(path: Path):
    from astrobio_lib.data.catalog import clean, read_csv

    return clean(read_csv(path))


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("nasa_exoplanet_archive", "catalog", "tap",
           "NASA Exoplanet Archive PSCompPars (planet and stellar parameters)",
           "NASA Exoplanet Archive: acknowledgement requested", url="https://exoplanetarchive.ipac.caltech.edu/TAP/sync",
           implemented=True, fetcher=_catalog_fetch, loader=_catalog_load),
    Source("clero", "climate", "package",
           "CLERO GCM emulator (ThousandWorlds: UM, ExoCAM, ExoPlaSim) for tidally locked ocean planets",
           "MIT", package="clero", implemented=True),
    Source("cobra_models", "metabolism", "package",
           "genome-scale metabolic models shipped with cobra (e_coli_core, iJO1366, salmonella)",
           "LGPL-2.0+/GPL-2.0+ (cobra); models CC-BY (BiGG)", package="cobra", implemented=True),
    Source("analytic_transmission", "spectrum", "model",
           "analytic scale-height transmission spectrum (H2O, CO2, CH4, O2, O3) + JWST-like noise",
           "this project (MIT)", implemented=True),
    Source("catalog_text", "text", "model", "descriptions generated from each catalog row",
           "this project (MIT)", implemented=True),
    Source("multirex", "spectrum", "package",
           "TauREx 3 forward models via multirex (explicit alternative; pins numpy<2)",
           "BSD-3 (TauREx)", package="multirex", implemented=False),
    Source("mast_jwst", "spectrum", "http", "JWST spectra via MAST (astroquery.mast)",
           "STScI MAST terms", url="https://mast.stsci.edu", credentials_env="MAST_API_TOKEN"),
    Source("mast_kepler_k2", "lightcurve", "http", "Kepler/K2 light curves via MAST",
           "STScI MAST terms", url="https://mast.stsci.edu"),
    Source("tess", "lightcurve", "http", "TESS light curves and TOI catalog via MAST / ExoFOP",
           "STScI MAST terms", url="https://exofop.ipac.caltech.edu"),
    Source("kegg", "metabolism", "http", "KEGG pathways (REST API; academic-use licence)",
           "KEGG licence (academic use)", url="https://rest.kegg.jp"),
    Source("rocke3d_exocam_archive", "climate", "http",
           "published GCM outputs (ROCKE-3D, ExoCAM) from their data archives",
           "per-archive terms", url="https://portal.nccs.nasa.gov"),
    Source("phl_catalog", "catalog", "http", "Planetary Habitability Laboratory habitable-worlds catalog",
           "PHL @ UPR Arecibo, CC BY", url="https://phl.upr.edu"),
    Source("nasa_psg", "spectrum", "http", "NASA Planetary Spectrum Generator API",
           "NASA GSFC PSG terms", url="https://psg.gsfc.nasa.gov", credentials_env="PSG_API_KEY"),
)}


def status_table() -> list[dict[str, str]]:
    """Returns one row per source: name, modality, access, status, detail, licence."""
    rows = []
    for s in SOURCES.values():
        st = s.check()
        rows.append({"source": s.name, "modality": s.modality, "access": s.access, "status": st.status,
                     "detail": st.detail, "licence": s.licence,
                     "credentials_env": s.credentials_env or ""})
    return rows
