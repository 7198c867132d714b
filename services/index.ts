// Builds a node's broker with the services its SERVICES setting names.
import { ServiceBroker, BrokerOptions } from "moleculer";
import type { Config } from "../lib/config";
import ApiService from "./api.service";
import FactoryService from "./factory.service";
import ScanService from "./scan.service";
import AnchorService from "./anchor.service";
import AdminService from "./admin.service";
import WebhooksService from "./webhooks.service";
import MaintenanceService from "./maintenance.service";

export const SCHEMAS: Record<string, any> = {
  api: ApiService,
  factory: FactoryService,
  scan: ScanService,
  anchor: AnchorService,
  admin: AdminService,
  webhooks: WebhooksService,
  maintenance: MaintenanceService,
};

export function createNode(config: Config, options: BrokerOptions): ServiceBroker {
  const broker = new ServiceBroker(options);
  for (const name of config.services) if (SCHEMAS[name]) broker.createService(SCHEMAS[name]);
  return broker;
}
