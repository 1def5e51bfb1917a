# A process pool inside a daemon (Python multiprocessing): the case CPython refuses.
# The Rust port is examples/pool_in_daemon.rs.
from multiprocessing import Pool, Process

def square(x):
    return x * x

def task():
    with Pool(4) as pool:
        print(f'pool results: {pool.map(square, range(10))}')

if __name__ == '__main__':
    process = Process(target=task, daemon=True)
    process.start()
    process.join()
    print(f'exitcode: {process.exitcode}')
