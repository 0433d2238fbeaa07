"""One SecretFlow SPU PSI party (run with a Python that has ``spu==0.9.5``).

    python _spu_psi_party.py --rank 0|1 --p0 PORT --p1 PORT --input IN.csv --output OUT.csv
        [--protocol PROTOCOL_ECDH|PROTOCOL_RR22]

Both ranks run ``spu.psi.psi_execute`` (PROTOCOL_ECDH on CURVE_25519, or PROTOCOL_RR22 with
SPU's defaults; result to both, receiver rank 0, inner join on column ``id``) over a brpc link on 127.0.0.1, like the SPU harness in our
peers' notes. Prints one JSON line: link set-up and psi_execute seconds, intersection count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rank", type=int, required=True)
    ap.add_argument("--p0", type=int, required=True)
    ap.add_argument("--p1", type=int, required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--protocol", default="PROTOCOL_ECDH", choices=["PROTOCOL_ECDH", "PROTOCOL_RR22"])
    a = ap.parse_args()
    from spu import psi
    from spu.libspu import link

    t0 = time.perf_counter()
    desc = link.Desc()
    desc.id = f"psibench{a.p0}"
    desc.recv_timeout_ms = 600_000
    desc.connect_retry_times = 120
    desc.connect_retry_interval_ms = 200
    desc.add_party("alice", f"127.0.0.1:{a.p0}")
    desc.add_party("bob", f"127.0.0.1:{a.p1}")
    lctx = link.create_brpc(desc, a.rank)
    t_link = time.perf_counter() - t0

    pc = psi.PsiProtocolConfig()
    pc.protocol = psi.parse_protocol(a.protocol)
    pc.receiver_rank = 0
    pc.broadcast_result = True
    if a.protocol == "PROTOCOL_ECDH":
        ep = psi.EcdhParams()
        ep.curve = psi.parse_curve_type("CURVE_25519")
        pc.ecdh_params = ep
    ip = psi.InputParams()
    ip.type = psi.SourceType.SOURCE_TYPE_FILE_CSV
    ip.path = a.input
    ip.selected_keys = ["id"]
    ip.keys_unique = False
    op = psi.OutputParams()
    op.type = psi.SourceType.SOURCE_TYPE_FILE_CSV
    op.path = a.output
    jc = psi.ResultJoinConfig()
    jc.type = psi.ResultJoinType.JOIN_TYPE_INNER_JOIN
    cfg = psi.PsiExecuteConfig()
    cfg.protocol_conf = pc
    cfg.input_params = ip
    cfg.output_params = op
    cfg.join_conf = jc
    t1 = time.perf_counter()
    report = psi.psi_execute(cfg, lctx)
    t_psi = time.perf_counter() - t1
    print(json.dumps({"rank": a.rank, "link_s": t_link, "psi_s": t_psi,
                      "intersection": report.intersection_count}), flush=True)
    sys.stdout.flush()
    os._exit(0)  # brpc teardown can hang; the result is printed


if __name__ == "__main__":
    main()
