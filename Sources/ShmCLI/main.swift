print("shm")
