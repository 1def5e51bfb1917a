# CPython's exit order: a daemon (logger) and a 2 s non-daemon (worker); main exits after 1 s.
import time
from multiprocessing import Process

def logger():
    while True:
        print(f'{time.time() - t0:.1f}s logger: tick', flush=True)
        time.sleep(0.5)

def worker():
    time.sleep(2)
    print(f'{time.time() - t0:.1f}s worker: done', flush=True)

if __name__ == '__main__':
    t0 = time.time()
    Process(target=logger, daemon=True).start()
    Process(target=worker).start()
    time.sleep(1)
    print(f'{time.time() - t0:.1f}s main: exiting', flush=True)
