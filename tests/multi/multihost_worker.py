"""One process of the 2-process test (tests/multi/test_multihost.py): joins a JAX job on localhost, trains the
same members as the single-process reference over the job's global mesh, and (process 0) saves the params.

    python tests/multi/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT DATA_FILE OUT.npz NUM_MEMBERS
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from jaxcnn.train.parallel import initialize_distributed  # noqa: E402


def main() -> None:
    process_id, num_processes, port = (int(a) for a in sys.argv[1:4])
    data_file, out, k = sys.argv[4], sys.argv[5], int(sys.argv[6])
    initialize_distributed(f"127.0.0.1:{port}", num_processes, process_id)
    import jax
    import numpy as np

    from tests.multi.common import flat_params, tiny_members, train_program

    assert jax.process_count() == num_processes and jax.device_count() == 2 * num_processes
    cfg, members, pool = tiny_members(data_file, k)
    program = train_program(cfg, members, pool, devices=None)
    params = flat_params(program)
    if jax.process_index() == 0:
        np.savez(out, mesh=np.asarray(list(program.mesh.shape.values())), **params)


if __name__ == "__main__":
    main()
