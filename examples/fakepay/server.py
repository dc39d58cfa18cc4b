"""The local fake payment service the payment-processor example charges; the code
ships with taskplane (``taskplane demo`` starts it too): taskplane/_examples/fakepay.py.

    python -m examples.fakepay.server --port 8402 [--database-url URL]
"""

from taskplane._examples.fakepay import main

if __name__ == "__main__":
    main()
