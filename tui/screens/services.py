"""Services view: every service with its model, ready count, requests/s, errors/s,
median latency and owner, and below it the replicas of the service under the cursor.

Services have no watch stream: the view reads ListServices when it opens, on
ctrl+r, and whenever the job and node streams tell of a change to a replica (the
state's `service_news`), at most one read at a time. Their traffic comes with the
nodes (each node gossips what its router carried: tui/traffic.py sums it), so the
rates follow the node stream without a read.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from murmur import MurmurError
from murmur.tui.actions import describe_failure
from murmur.tui.columns import (
    REPLICA_COLUMNS,
    SERVICE_COLUMNS,
    SERVICE_FILTER,
    ServiceRow,
    gpu_request,
    runtime_name,
    service_ready,
)
from murmur.tui.screens.table_screen import TableScreen
from murmur.tui.table_model import TableModel
from murmur.tui.traffic import NO_TRAFFIC, ServiceRates, latency_text, rate_text, service_rates
from murmur.tui.widgets.virtual_table import VirtualTable
from murmur.v1 import types_pb2

ServicesRead = tuple[int, int]
"""What a read of the services covers: the state's service news and the connection."""


def replica_key(replica: types_pb2.ServiceReplica) -> str:
    return f"{replica.slot}/{replica.job_id}"


class ServicesScreen(TableScreen[ServiceRow]):
    VIEW_NAME = "services"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+r", "reload", "Reload")]
    DEFAULT_CSS = """
    ServicesScreen #service-facts { height: auto; padding: 0 1; background: $boost; }
    """

    def __init__(self) -> None:
        super().__init__(SERVICE_COLUMNS, SERVICE_FILTER)
        self.replicas: TableModel[types_pb2.ServiceReplica] = TableModel(REPLICA_COLUMNS)
        self._read_for: ServicesRead | None = None
        self._reading = False
        self._services: list[types_pb2.Service] = []
        self._rates: dict[str, ServiceRates] = {}

    def compose_body(self) -> ComposeResult:
        yield from super().compose_body()
        yield Static(id="service-facts")
        yield VirtualTable(self.replicas, clock=self.top.clock, id="replicas")

    @property
    def replicas_table(self) -> VirtualTable[types_pb2.ServiceReplica]:
        return self.query_one("#replicas", VirtualTable)

    def sync_model(self) -> None:
        self._read_if_stale()
        rates = service_rates(self.top.state.nodes.values())
        if rates != self._rates:
            self._rates = rates
            self._show_rows()

    def _show_rows(self) -> None:
        self.model.replace_all(
            (service.spec.name, ServiceRow(service, self._rates.get(service.spec.name, NO_TRAFFIC)))
            for service in self._services
        )

    def update_body(self, *, changed: bool) -> None:
        super().update_body(changed=changed)
        self._show_replicas()

    # ------------------------------------------------------------------ reads

    def _read_if_stale(self) -> None:
        top = self.top
        wanted = (top.state.service_news, top.connection_epoch)
        if self._reading or wanted == self._read_for or not top.connection.attached:
            return
        self._reading = True
        self.run_worker(self._read(wanted), group="services")

    async def _read(self, wanted: ServicesRead) -> None:
        try:
            services = await self.top.connection.client.list_services()
        except MurmurError as exc:
            self.notify(describe_failure("list services", exc), severity="error")
        else:
            self._services = services
            self._show_rows()
        finally:
            self._reading = False
        # A failed read counts too: it is tried again on news or ctrl+r, not on every
        # repaint, which would ask a refusing node ten times a second.
        self._read_for = wanted
        self.refresh_view(force=True)

    def action_reload(self) -> None:
        self._read_for = None
        self._read_if_stale()

    # --------------------------------------------------------------- replicas

    def _show_replicas(self) -> None:
        row = self.selected() if self.model.visible() else None
        facts = self.query_one("#service-facts", Static)
        if row is None:
            self.replicas.replace_all(())
            facts.update(Text("no service selected", style="dim"))
        else:
            self.replicas.replace_all(
                (replica_key(replica), replica) for replica in row.service.replicas
            )
            facts.update(service_facts(row.service, row.rates))
        self.replicas_table.rows_changed()

    def on_virtual_table_cursor_moved(self, event: VirtualTable.CursorMoved) -> None:
        if event.table is self.table:
            self._show_replicas()

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        if event.table is self.table:
            self.replicas_table.focus()
            return
        replica = self.replicas.get(event.key)
        if replica is not None and replica.job_id:
            self.top.open_job(replica.job_id)

    def back(self) -> bool:
        if super().back():
            return True
        if self.replicas_table.has_focus:
            self.table.focus()
            return True
        return False


def service_facts(service: types_pb2.Service, rates: ServiceRates = NO_TRAFFIC) -> Text:
    """One line on the replicas: whose service, its traffic, what it answers to, how
    each runs."""
    spec = service.spec
    line = Text()
    line.append(f"replicas of {spec.name}", style="bold")
    line.append(f"  {service_ready(service)} ready")
    line.append(
        f"  {rate_text(rates.requests)} req/s, {rate_text(rates.errors)} err/s, "
        f"p50 {latency_text(rates.p50_seconds)}, p99 {latency_text(rates.p99_seconds)}"
    )
    adapters = (f"{spec.model}:{name}" for name in sorted(spec.adapters))
    models = [spec.model, *spec.aliases, *adapters]
    line.append(f"  models {', '.join(models)}")
    runtime = runtime_name(spec.template.runtime)
    line.append(f"  each: {runtime} · GPUs {gpu_request(spec.template.gpus)}")
    line.append(f"  probe GET {spec.readiness.path or '/v1/models'}")
    line.append(f"  restart {spec.restart or 'always'}")
    return line
