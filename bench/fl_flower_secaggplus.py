"""Flower's SecAgg+ in its own simulation, for comparison with bench/fl_bench.py: 10 clients x N
float32 weights, FedAvg with SecAggPlusWorkflow (num_shares 10 = every client, threshold 6,
Flower's default quantisation into Z_2^32), 3 rounds; prints each round's wall time from
configure_fit to aggregate_fit. Not a project dependency: run it in a separate environment,

    python -m venv /tmp/flwr && /tmp/flwr/bin/pip install 'flwr[simulation]'
    /tmp/flwr/bin/python bench/fl_flower_secaggplus.py 1000000

(flwr 1.42 with ray 2.55 installed here in 90 s). Round 1 includes Ray's start-up.
"""
import sys
import time

import numpy as np
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import Context, ndarrays_to_parameters
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.simulation import run_simulation

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
CLIENTS, ROUNDS = 10, 3
stamps = []

class C(NumPyClient):
    def fit(self, parameters, config):
        return [np.clip(p + 0.01, -1, 1) for p in parameters], 1, {}

def client_fn(context: Context):
    return C().to_client()

class Timed(FedAvg):
    def configure_fit(self, server_round, parameters, client_manager):
        stamps.append(("start", server_round, time.perf_counter()))
        return super().configure_fit(server_round, parameters, client_manager)
    def aggregate_fit(self, server_round, results, failures):
        out = super().aggregate_fit(server_round, results, failures)
        stamps.append(("end", server_round, time.perf_counter()))
        t = {k: v for k, r, v in stamps if r == server_round}
        print(f"flower round {server_round}: {t['end'] - t['start']:.2f} s, results {len(results)}, failures {len(failures)}", flush=True)
        return out

client_app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
server_app = ServerApp()

@server_app.main()
def main(grid, context: Context) -> None:
    strategy = Timed(initial_parameters=ndarrays_to_parameters([np.zeros(N, dtype=np.float32)]),
                     min_fit_clients=CLIENTS, min_available_clients=CLIENTS, fraction_evaluate=0.0)
    ctx = LegacyContext(context=context, config=ServerConfig(num_rounds=ROUNDS), strategy=strategy)
    workflow = DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(num_shares=CLIENTS, reconstruction_threshold=6))
    workflow(grid, ctx)

run_simulation(server_app=server_app, client_app=client_app, num_supernodes=CLIENTS,
               backend_config={"client_resources": {"num_cpus": 0.5}, "init_args": {"num_cpus": 2}})
