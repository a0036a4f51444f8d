"""``rt-tagger --cluster ...``: the run of :class:`rt_tagger.run.Run` (the same checks, outputs,
HTTP status and shutdown) with a :class:`~rt_tagger.cluster.driver.ClusterMonitor` in place of
the one-process monitor. The model loads in the actors (or the Serve deployment), not here."""
from __future__ import annotations

from ..errors import ConfigError
from ..run import Run, refused
from ..config import ClusterSettings

__all__ = ["ClusterRun"]


class _Driver:
    """What the run's outputs ask of a tagger on the driver: nothing is loaded here."""

    tags: list[str] = []

    def close(self) -> None:
        pass


class ClusterRun(Run):
    """``ClusterRun(sources, options, monitoring=...).execute()`` -> exit status."""

    def check(self) -> None:
        o = self.o
        for flag, on in (("--gui", o.gui), ("--csv", o.csv), ("--record", o.record)):
            if on:
                raise ConfigError(f"{flag} is not available with --cluster (the sources run in Ray "
                                  "actors); use --jsonl, --event-log, --osc or --http")
        self.settings = ClusterSettings.from_options(o)
        from .connect import require_ray

        require_ray(local=self.settings.address == "local")
        if self.settings.address == "local":
            super().check()  # the files are read on this machine: check them here
        else:  # the files are read on the cluster's nodes
            from ..preflight import check_outputs

            line = refused(self.sources, o)
            if line:
                raise ConfigError(line)
            check_outputs(o)

    def execute(self) -> int:
        self.check()
        return self._drive(_Driver())

    def _monitor(self, tagger):
        from .driver import ClusterMonitor

        return ClusterMonitor(self.o.config, self.sources, self.settings, monitoring=self.monitoring,
                              restart_delay=getattr(self.o, "restart_delay", 30.0))
