"""Attach anywhere: when the node `murmur top` is attached to dies, it moves to another
node and says so in the header; with no node to reach it says that instead of crashing."""

from __future__ import annotations

from tests.support.nodes import Lab, NodeProcess, free_port
from tests.tui.conftest import top_for, wait_for_text

SIZE = (150, 40)


def join_second_node(lab: Lab, ca_node: NodeProcess) -> NodeProcess:
    token = lab.murmur("token", "create", "--node", ca_node.address)
    assert token.returncode == 0, token.stderr
    return lab.start_node(
        "node-2",
        extra_args=[
            "--join", ca_node.address, "--token", token.stdout.strip(),
            "--simulate-gpus", "4xA100-80GB",
        ],
    )  # fmt: skip


async def test_top_fails_over_to_another_node_and_says_so(lab: Lab, ca_node: NodeProcess) -> None:
    second = join_second_node(lab, ca_node)
    app = top_for(lab, ca_node, seeds=[second.address])
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for_text(pilot, f"attached to node-1 at {ca_node.address}")
        ca_node.kill()
        await wait_for_text(
            pilot,
            f"attached to node-2 at {second.address}",
            f"reconnected to node-2 at {second.address}; lost node-1 at {ca_node.address}",
            "4xA100 (simulated)",
        )
    assert app.connection.node_name == "node-2"


async def test_an_unreachable_node_is_reported_in_the_header_not_raised(lab: Lab) -> None:
    address = f"127.0.0.1:{free_port()}"
    ghost = NodeProcess(  # a node that was never started: nothing listens there
        name="ghost", data_dir=lab.root, address=address, join_address=address,
        process=None,  # type: ignore[arg-type]
        log_path=lab.root / "none.log",
    )  # fmt: skip
    app = top_for(lab, ghost)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        text = await wait_for_text(pilot, "disconnected:", f"{address} unreachable", "retrying")
        assert "Traceback" not in text
        assert app.is_running
