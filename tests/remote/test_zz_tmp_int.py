import time, pytest
from bioxen_shell.vm.manager import Manager
from bioxen_shell.vm.handle import VMInterrupted
def test_int(xcpng_vm_options):
    m = Manager()
    opts = dict(xcpng_vm_options); opts.pop("type")
    fails = 0
    for i in range(20):
        vm = m.create(f"i{i}", type="xcpng", **opts)
        vm.send("while true do end")
        time.sleep(0.3)
        t0=time.time()
        vm.interrupt()
        try:
            r = vm.recv(4)
            print("NO INTERRUPT", i, r, vm._proc.stderr_tail()[-500:])
            fails += 1
        except VMInterrupted:
            pass
        except Exception as e:
            print("OTHER", type(e), e, vm._proc.stderr_tail()[-500:]); fails += 1
        print(i, "took", time.time()-t0, vm.describe().get("interpreter"))
        m.destroy(vm.name)
    print("fails", fails)
