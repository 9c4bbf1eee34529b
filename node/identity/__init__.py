"""How a server gets and keeps its certificate: enrollment with a join token, the
first node's bootstrap of the lab's CA, and the client side of joining."""
