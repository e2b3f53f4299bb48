"""BundleReservations on one node's resources: all-or-nothing prepare, commit under the
group's names, cancel, retries that change nothing, and GPUs seen through a bundle."""
from ray_common.protocol import common_pb2
from ray_raylet import resources as res
from ray_raylet.bundles import BundleReservations

GROUP = bytes(range(18))
GID = GROUP.hex()


def bundle(index, **amounts):
    return common_pb2.Bundle(bundle_index=index, unit_resources=amounts)


def node(**total):
    killed, changes = [], []
    local = res.NodeResources(total, track_instances=True)
    bundles = BundleReservations(local, lambda: changes.append(1),
                                 lambda group_hex, why: killed.append(group_hex))
    return local, bundles, killed, changes


def test_prepare_is_all_or_nothing():
    local, bundles, _, _ = node(CPU=2)
    ok, why = bundles.prepare(GROUP, [bundle(0, CPU=1), bundle(1, CPU=2)])
    assert not ok and "bundle 1 needs {CPU: 2}; available {CPU: 1}" in why
    assert local.available_floats() == {"CPU": 2.0} and bundles.held(GROUP) == []
    assert bundles.prepare(GROUP, [bundle(0, CPU=1), bundle(1, CPU=1)]) == (True, "")
    assert local.available_floats() == {"CPU": 0.0}
    assert bundles.prepare(GROUP, [bundle(0, CPU=1)]) == (True, "")     # a retry: no change
    assert local.available_floats() == {"CPU": 0.0}


def test_commit_adds_the_group_names_and_cancel_takes_them_back():
    local, bundles, killed, changes = node(CPU=4)
    bundles.prepare(GROUP, [bundle(0, CPU=1), bundle(1, CPU=2)])
    bundles.commit(GROUP, [0, 1])
    bundles.commit(GROUP, [0, 1])                                        # a retry
    assert local.total_floats() == {
        "CPU": 4.0, f"CPU_group_0_{GID}": 1.0, f"CPU_group_1_{GID}": 2.0, f"CPU_group_{GID}": 3.0,
        f"bundle_group_0_{GID}": 1000.0, f"bundle_group_1_{GID}": 1000.0,
        f"bundle_group_{GID}": 2000.0}
    assert local.available["CPU"] == res.to_fixed("CPU", 1)
    lease = local.allocate({f"CPU_group_1_{GID}": res.to_fixed("x", 2),
                            f"CPU_group_{GID}": res.to_fixed("x", 2)})
    assert lease is not None and changes
    assert bundles.cancel(GROUP) == [0, 1] and killed == [GID]
    assert local.total_floats() == {"CPU": 4.0} and local.available_floats() == {"CPU": 4.0}
    local.release(lease)       # the killed lease's worker exits later: nothing comes back
    assert local.available_floats() == {"CPU": 4.0}
    assert bundles.cancel(GROUP) == []


def test_cancelling_prepared_bundles_kills_nothing():
    local, bundles, killed, _ = node(CPU=2)
    bundles.prepare(GROUP, [bundle(0, CPU=2)])
    assert bundles.cancel(GROUP, [0]) == [0] and killed == []
    assert local.available_floats() == {"CPU": 2.0}


def test_a_bundle_gpu_lease_learns_the_devices_behind_it():
    local, bundles, _, _ = node(CPU=1, GPU=4)
    busy = local.allocate({"GPU": res.to_fixed("GPU", 1)})               # takes GPU 0
    bundles.prepare(GROUP, [bundle(0, GPU=2)])
    bundles.commit(GROUP, [0])
    lease = local.allocate({f"GPU_group_0_{GID}": res.to_fixed("GPU", 1),
                            f"GPU_group_{GID}": res.to_fixed("GPU", 1)})
    assert local.devices(lease) in ([1], [2])
    assert local.devices(busy) == [0]
    bundles.cancel(GROUP)
    assert local.available_floats() == {"CPU": 1.0, "GPU": 3.0}
