"""The provider simulator: Anthropic, Bedrock and Vertex on loopback, deterministic, with fault injection.

    with Simulator() as sim:
        client = anthropic.Anthropic(base_url=f"{sim.url}/anthropic", api_key="x")
        sim.faults.set("bedrock", "us-east-1", status=503)
"""

from inference.simulator.server import Fault, Faults, Simulator

__all__ = ["Fault", "Faults", "Simulator"]
