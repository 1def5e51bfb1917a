# A multiprocessing daemon tries three ways of making a process: Process.start(), os.fork(), subprocess.
import os, subprocess
from multiprocessing import Process, current_process

def task():
    print(f'Daemon process: {current_process().daemon}', flush=True)
    try:
        Process(target=print).start()
    except AssertionError as e:
        print(f'Process.start(): AssertionError: {e}', flush=True)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    print('os.fork(): ok', flush=True)
    subprocess.run(['true'], check=True)
    print('subprocess.run(): ok', flush=True)

if __name__ == '__main__':
    p = Process(target=task, daemon=True)
    p.start()
    p.join()
