/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The store drivers built into cfgfs: a new store adds its line here and its file. */
#include "store.h"

extern const struct store_driver etcd_driver, consul_driver, zk_driver;

const struct store_driver *const store_drivers[] = {
	&etcd_driver,
	&consul_driver,
#ifdef HAVE_ZOOKEEPER
	&zk_driver,
#endif
	NULL,
};
