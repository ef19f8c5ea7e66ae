"""The sans-I/O stack: IP packets and a clock reading in; IP packets, deadlines and wake-ups out.

``NetCore`` owns every socket of one interface. It never sleeps, never awaits and never reads a
clock: the anyio driver (``smolmix_core.netstack.stack``) feeds it packets from the device and
timer expiries, sends what ``drain_transmit`` returns, and wakes the tasks of the sockets that
``drain_wakeups`` names. Every call is cheap and synchronous.

Contract between core and driver (both sides rely on it):

* After *any* call into the core (``receive_packet``, ``handle_timeouts``, or a socket method),
  the driver calls ``drain_transmit()`` and sends those packets in order, then
  ``drain_wakeups()`` and wakes every waiter on those sockets, then re-reads ``poll_deadline()``.
* Addresses at this API are ``(ip_text, port)`` tuples, like ``socket``. IPv4 and IPv6 are both
  supported; the family follows the address.
* Socket objects returned here are owned by the core. ``user_data`` on each is a free slot for the
  driver (for example its anyio events). A socket is forgotten by the core once it is closed and
  its connection has finished (after TIME-WAIT or RST).
* Errors the user must see (refused, reset, timed out) are stored on the socket as ``error`` (an
  instance from ``smolmix_core.errors``) and the socket is woken; the core never raises them into
  ``receive_packet`` or ``handle_timeouts``. Bad input is dropped and counted in ``stats()``.
"""

from __future__ import annotations

Address = tuple[str, int]
